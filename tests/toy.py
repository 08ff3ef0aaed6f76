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
