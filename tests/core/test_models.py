import pytest
import torch

from udistill.errors import CheckpointError
from udistill.models import build_model, load_model, save_model, to_student


@pytest.mark.parametrize("size", [(61, 83), (64, 96), (33, 47)])
def test_output_shapes_for_odd_sizes(tiny_model_cfg, size):
    model = build_model(tiny_model_cfg, 11).eval()
    out = model(torch.rand(2, 3, *size))
    assert out.logits.shape == (2, 11, *size)
    assert out.sigma is None


@pytest.mark.parametrize("heads", ["prediction+uncertainty", "prediction+uncertainty-light"])
def test_student_sigma_in_unit_interval_and_gradients_reach_both_heads(tiny_model_cfg, heads):
    torch.manual_seed(0)
    student = to_student(build_model(tiny_model_cfg, 5), heads).train()
    out = student(torch.rand(2, 3, 40, 56))
    assert out.sigma.shape == out.logits.shape == (2, 5, 40, 56)
    assert (out.sigma > 0).all() and (out.sigma < 1).all()
    (out.logits.mean() + out.sigma.mean()).backward()
    pred_grad = student.head.classifier.weight.grad
    unc = (
        student.uncertainty_head.classifier.weight.grad
        if student.uncertainty_head is not None
        else student.head.uncertainty.weight.grad
    )
    assert pred_grad is not None and pred_grad.abs().sum() > 0
    assert unc is not None and unc.abs().sum() > 0


def test_student_starts_as_the_baseline(tiny_model_cfg):
    torch.manual_seed(0)
    base = build_model(tiny_model_cfg, 5).eval()
    student = to_student(base, "prediction+uncertainty").eval()
    x = torch.rand(1, 3, 32, 48)
    torch.testing.assert_close(student(x).logits, base(x).logits)


def test_checkpoint_round_trip_and_mismatch(tiny_model_cfg, tmp_path):
    model = build_model(tiny_model_cfg, 11).eval()
    path = tmp_path / "m.safetensors"
    save_model(model, path, classes=[str(i) for i in range(11)])
    loaded, meta = load_model(path)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
    assert meta["heads"] == "prediction"
    with pytest.raises(CheckpointError, match="11 classes"):
        load_model(path, num_classes=19)
    other = tiny_model_cfg.__class__(encoder="mobilenet_v2", decoder_channels=32, head_channels=32)
    with pytest.raises(CheckpointError, match="encoder"):
        load_model(path, expect=other)


def test_tampered_and_pickled_checkpoints_are_refused(tiny_model_cfg, tmp_path):
    model = build_model(tiny_model_cfg, 3)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(bad)
    pkl = tmp_path / "evil.safetensors"
    torch.save(model.state_dict(), pkl)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(pkl)


def test_safetensors_whose_header_length_starts_with_0x80_is_not_mistaken_for_a_pickle(tiny_model_cfg, tmp_path):
    """Regression: the first byte of a safetensors file is the low byte of its header length,
    which can be 0x80, the first byte of a pickle."""
    model = build_model(tiny_model_cfg, 3)
    path = tmp_path / "m.safetensors"
    for k in range(300):
        save_model(model, path, pad="x" * k)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("could not produce a header length with low byte 0x80")
    loaded, meta = load_model(path)
    assert meta["pad"] == "x" * k
