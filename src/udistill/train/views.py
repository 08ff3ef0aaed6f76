"""The training view of a dataset: augmentation per (seed, epoch, index), plus optional
cached teacher maps that follow the same geometric transforms as the image, and optional
perturbed views (:mod:`udistill.pipeline.perturb`) chosen before the geometric augmentation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..data.transforms import Augment, augment_seed, geometric, photometric


class TrainView(Dataset):
    """Wraps a dataset for training. Set ``epoch`` before each epoch.

    With ``targets`` (an object with ``get(index) -> (mean, std)``, float16 (C, H, W), or
    (C, h, w) at the teacher cache's reduced resolution) the item also carries
    ``teacher_mean`` and ``teacher_std`` aligned with the augmented image, at the maps' own
    resolution (:func:`~udistill.data.transforms.geometric`; the loss upsamples them).
    """

    def __init__(self, dataset: Dataset, augment: Augment, seed: int = 0, targets=None, views=None):
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.targets = targets
        self.views = views  # udistill.pipeline.perturb.PerturbedViews or None
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        target_index = index
        if self.views is not None:  # the perturbed view first, geometry on top (maps follow)
            item, target_index = self.views.sample(self.dataset, index, self.epoch)
        else:
            item = dict(self.dataset[index])
        s = augment_seed(self.seed, self.epoch, index)
        gen = torch.Generator().manual_seed(s)
        maps = []
        if self.targets is not None:
            maps = list(self.targets.get(target_index))
        image, label, maps = geometric(item["image"], item["label"], maps, self.augment, gen)
        item["image"] = photometric(image, self.augment.photometric, s)
        item["label"] = label
        item.pop("depth", None)
        if self.targets is not None:
            item["teacher_mean"], item["teacher_std"] = maps
        return item
