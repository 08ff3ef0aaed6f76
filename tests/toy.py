"""A tiny, fast, structured dataset for unit tests of training machinery (no synthetic renderer)."""

import numpy as np

from udistill.data.base import SegmentationDataset
from udistill.data.labels import LabelScheme

TOY = LabelScheme("toy3", ("bg", "square", "bar"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))


class ToyDataset(SegmentationDataset):
    scheme = TOY

    def __init__(self, n=8, h=32, w=48, seed=0):
        self.n, self.h, self.w, self.seed = n, h, w, seed

    def __len__(self):
        return self.n

    def describe(self):
        return {"toy": True, "n": self.n, "h": self.h, "w": self.w, "seed": self.seed}

    def load(self, index):
        rng = np.random.default_rng([self.seed, index])
        label = np.zeros((self.h, self.w), np.uint8)
        y, x = rng.integers(0, self.h - 10), rng.integers(0, self.w - 10)
        label[y : y + 10, x : x + 10] = 1
        c = rng.integers(0, self.w - 3)
        label[:, c : c + 3] = 2
        label[0, :4] = 255
        colors = np.array([[40, 40, 40], [200, 60, 60], [60, 200, 60]], np.float64)
        image = colors[np.minimum(label, 2)] + rng.normal(0, 20, (self.h, self.w, 3))
        return image.clip(0, 255).astype(np.uint8), label, f"toy-{index}", None


def save_random_student(path, model_cfg, ood: dict | None = None, input_size=(32, 48), model=None):
    """A seeded, untrained two-headed CamVid student checkpoint with the given alarm record
    (for tests of deployment code: predict, export, ood-report); ``model``: weights to save
    instead of a fresh seeded one."""
    import torch

    from udistill.data.labels import CAMVID11
    from udistill.models.build import build_model
    from udistill.models.checkpoint import save_model

    if model is None:
        torch.manual_seed(0)
        model = build_model(model_cfg, 11, "prediction+uncertainty").eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"ood": ood} if ood is not None else {}
    save_model(
        model,
        path,
        classes=list(CAMVID11.classes),
        label_scheme="camvid11",
        input_size=list(input_size),
        resize="stretch",
        **extra,
    )
    return path


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR + IEND claiming ``width`` x ``height`` RGB, a few dozen
    bytes: what a decompression bomb's header looks like."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def save_random_run(run, model_cfg, num_classes: int, label_scheme: str, members: int = 2, seed: int = 0) -> None:
    """A run folder of untrained members (seeds ``seed + k``) and a student, for tests of the
    evaluation that need checkpoints but no training."""
    import torch

    from udistill.models.build import build_model, to_student
    from udistill.models.checkpoint import save_model

    meta = {"classes": ["c"] * num_classes, "label_scheme": label_scheme}
    for k in range(members):
        torch.manual_seed(seed + k)
        save_model(build_model(model_cfg, num_classes), run / "members" / f"member-{k}" / "model.safetensors", **meta)
    student = to_student(build_model(model_cfg, num_classes), "prediction+uncertainty")
    save_model(student, run / "student" / "model.safetensors", **meta)
