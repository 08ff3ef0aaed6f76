"""The fade probe: where the student's σ on faded and blank frames comes from."""

from __future__ import annotations

import pytest
import torch

from udistill.config import ModelConfig
from udistill.metrics.fade import FADE_LEVELS, fade, fade_response, fade_verdict
from udistill.models import build_model, to_student
from udistill.pipeline.distill import init_sigma_bias

MODEL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)


def test_fade_goes_from_the_image_to_a_blank_frame_of_its_mean_colour():
    x = torch.rand(2, 3, 16, 20)
    assert torch.allclose(fade(x, 1.0), x)
    blank = fade(x, 0.0)
    assert torch.allclose(blank, x.mean((2, 3), keepdim=True).expand_as(x))
    half = fade(x, 0.5)
    assert float((half - blank).abs().mean()) == pytest.approx(0.5 * float((x - blank).abs().mean()), rel=1e-5)


def test_verdict_tells_a_learned_response_from_a_fallback_to_the_bias():
    teacher = [0.01, 0.02, 0.05, 0.10, 0.20]  # the members disagree more as the frame fades
    learned = [0.012, 0.018, 0.04, 0.09, 0.17]
    assert fade_verdict(learned, teacher, start=[0.5] * 5)["verdict"] == "teacher"
    fallback = [0.01, 0.1, 0.3, 0.45, 0.49]  # climbs back to where it started (0.5)
    v = fade_verdict(fallback, teacher, start=[0.5] * 5)
    assert v["follows_teacher"] and v["origin"] == "initialisation" and v["verdict"] == "initialisation"
    inverted = [0.02, 0.015, 0.01, 0.005, 0.002]  # started at the teacher's scale, falls with the features
    v = fade_verdict(inverted, teacher, start=[0.01] * 5)
    assert not v["follows_teacher"] and v["verdict"] == "initialisation"


def test_a_sigma_head_that_is_only_its_bias_is_called_initialisation():
    """A real student whose σ is its bias (output weights zero, as after bias init and no
    training) gives the same U at every fade level: it cannot follow a teacher whose Σ
    rises as the frame fades."""
    torch.manual_seed(0)
    student = to_student(build_model(MODEL, 3), "prediction+uncertainty").eval()
    init_sigma_bias(student, torch.tensor([0.02, 0.02, 0.02]))
    images = torch.rand(2, 3, 32, 48)
    response = fade_response(lambda x: student(x).sigma.mean(1), images)
    assert len(response) == len(FADE_LEVELS)
    assert max(response) - min(response) < 1e-6
    teacher = [0.01, 0.02, 0.05, 0.10, 0.20]
    assert fade_verdict(response, teacher, start=response)["verdict"] == "initialisation"
