"""Teacher targets for distillation, two ways.

- **online**: the ensemble runs (no grad) on every training batch, after augmentation;
  any augmentation works, the cost is F extra forward passes per step.
- **cached**: M and Sigma are computed once per training image (un-augmented) and stored as
  float16 in memory-mapped files; the training view applies the geometric augmentations
  (flip, scale, crop) to the cached maps together with the image. Limitation: photometric
  augmentations (colour, blur, noise) change the image but not the cached targets, which
  then describe the clean image; use online targets if you need them.

The cache folder holds ``mean.f16``, ``std.f16`` (N x C x H x W), ``done.u8`` (one flag per
image, set only after its maps are flushed), ``crc.u32`` (a CRC32 per image, checked on
read) and ``meta.json`` (shape and the fingerprint of ensemble + data + temperature). Building
resumes where it stopped; a cache whose fingerprint does not match is refused.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .errors import UdistillError
from .io import atomic_write_json, read_json, remove_stale_temp_files


class StaleCacheError(UdistillError):
    """The cache was built for another ensemble, data set or temperature."""


def cache_fingerprint(ensemble, dataset) -> dict:
    data_fp = dataset.fingerprint() if hasattr(dataset, "fingerprint") else f"{type(dataset).__name__}:{len(dataset)}"
    return {"ensemble": ensemble.fingerprint(), "data": data_fp, "temperature": ensemble.temperature, "members": len(ensemble)}


class CachedTargets:
    """Memory-mapped float16 teacher maps; ``get(index) -> (mean, std)`` as (C, H, W) tensors."""

    def __init__(self, folder: str | Path, verify: bool = True):
        self.folder = Path(folder)
        self.meta = read_json(self.folder / "meta.json", what="teacher cache metadata")
        n, c, h, w = self.meta["shape"]
        self.shape = (n, c, h, w)
        self.mean = np.memmap(self.folder / "mean.f16", np.float16, "r", shape=self.shape)
        self.std = np.memmap(self.folder / "std.f16", np.float16, "r", shape=self.shape)
        self.crc = np.memmap(self.folder / "crc.u32", np.uint32, "r", shape=(n,))
        done = np.memmap(self.folder / "done.u8", np.uint8, "r", shape=(n,))
        if not done.all():
            raise UdistillError(f"{self.folder}: teacher cache is incomplete ({int(done.sum())}/{n}); rebuild it")
        self.verify = verify

    def __len__(self) -> int:
        return self.shape[0]

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mean = np.array(self.mean[index])
        std = np.array(self.std[index])
        if self.verify and _crc(mean, std) != int(self.crc[index]):
            raise UdistillError(f"{self.folder}: teacher cache entry {index} is corrupt (checksum mismatch); delete the folder and rebuild")
        return torch.from_numpy(mean), torch.from_numpy(std)


def _crc(mean: np.ndarray, std: np.ndarray) -> int:
    return zlib.crc32(std.tobytes(), zlib.crc32(mean.tobytes())) & 0xFFFFFFFF


@torch.no_grad()
def build_cache(ensemble, dataset: Dataset, folder: str | Path, device="cpu", batch_size: int = 4, progress: bool = True) -> CachedTargets:
    """Compute (or finish computing) the cache of M and Sigma for every image of ``dataset``."""
    folder = Path(folder)
    fp = cache_fingerprint(ensemble, dataset)
    first = dataset[0]
    c = None
    h, w = first["image"].shape[-2:]
    meta_path = folder / "meta.json"
    remove_stale_temp_files(folder)  # a meta.json half-written by a killed earlier run
    if meta_path.exists():
        meta = read_json(meta_path, what="teacher cache metadata")
        if meta.get("fingerprint") != fp:
            raise StaleCacheError(
                f"{folder}: teacher cache is stale (built for ensemble {meta.get('fingerprint', {}).get('ensemble')}, "
                f"data {meta.get('fingerprint', {}).get('data')}; now {fp['ensemble']}, {fp['data']}); delete the folder to rebuild"
            )
        shape = tuple(meta["shape"])
    else:
        c = ensemble(first["image"][None].to(device)).mean.shape[1]
        shape = (len(dataset), c, h, w)
        folder.mkdir(parents=True, exist_ok=True)
        for name, dtype in (("mean.f16", np.float16), ("std.f16", np.float16), ("crc.u32", np.uint32), ("done.u8", np.uint8)):
            n_items = int(np.prod(shape)) if name.endswith("f16") else shape[0]
            np.memmap(folder / name, dtype, "w+", shape=(n_items,)).flush()
        atomic_write_json(meta_path, {"shape": list(shape), "fingerprint": fp, "dtype": "float16"})
    n = shape[0]
    mean_mm = np.memmap(folder / "mean.f16", np.float16, "r+", shape=shape)
    std_mm = np.memmap(folder / "std.f16", np.float16, "r+", shape=shape)
    crc_mm = np.memmap(folder / "crc.u32", np.uint32, "r+", shape=(n,))
    done = np.memmap(folder / "done.u8", np.uint8, "r+", shape=(n,))
    todo = [i for i in range(n) if not done[i]]
    if todo:
        loader = DataLoader(_Indexed(dataset, todo), batch_size=batch_size, shuffle=False)
        from .progress import progress as progress_bar

        bar = progress_bar(loader, "teacher cache", len(loader), enabled=progress)
        for idx, images in bar:
            if tuple(images.shape[-2:]) != (shape[2], shape[3]):
                raise UdistillError(f"teacher cache needs one image size; got {tuple(images.shape[-2:])}, expected {shape[2:]} (set data.size)")
            out = ensemble(images.to(device))
            m = out.mean.cpu().numpy().astype(np.float16)
            s = out.std.cpu().numpy().astype(np.float16)
            idx = idx.numpy()
            for j, i in enumerate(idx):
                mean_mm[i] = m[j]
                std_mm[i] = s[j]
                crc_mm[i] = _crc(m[j], s[j])
            mean_mm.flush()
            std_mm.flush()
            crc_mm.flush()
            done[idx] = 1
            done.flush()
    del mean_mm, std_mm, crc_mm, done
    return CachedTargets(folder)


class _Indexed(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        idx = self.indices[i]
        return idx, self.dataset[idx]["image"]
