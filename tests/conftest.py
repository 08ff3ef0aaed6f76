import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_model_cfg():
    """A small, fast model for tests: timm MobileNetV3-small encoder, 32 decoder channels."""
    from udistill.config import ModelConfig

    return ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=32, head_channels=32, dropout=0.1)
