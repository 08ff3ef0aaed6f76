"""Teacher targets for distillation, two ways.

- **online**: the ensemble runs (no grad) on every training batch, after augmentation;
  any augmentation works, the cost is F extra forward passes per step.
- **cached**: M and Sigma are computed once per training image (un-augmented) and stored as
  float16 in memory-mapped files; the training view applies the geometric augmentations
  (flip, scale, crop) to the cached maps together with the image. Limitation: photometric
  augmentations (colour, blur, noise) change the image but not the cached targets, which
  then describe the clean image; use online targets if you need them.

**Resolution** (``distill.cache_reduction``, default 4): the maps are stored at 1/r of the
input size, area-averaged from the float32 maps before the float16 rounding. The student's
heads work at 1/4 of the input (DeepLabV3+ upsamples their output bilinearly ×4), so r = 4
keeps what the heads can represent, at 1/16 of the disk (Cityscapes at 512×1024, 19
classes: 7.4 GB instead of 118 GB). The loss upsamples the maps bilinearly to the
student's output (:func:`udistill.core.losses.distillation_loss`); area averaging and bilinear
upsampling are both convex combinations, so the upsampled M still sums to 1 at every pixel.
Cell ``j`` of a reduced map covers input rows ``j*H/h .. (j+1)*H/h`` (exactly ``r`` rows
when r divides the size; otherwise ``adaptive_avg_pool2d``'s nearly even windows).

The cache folder holds ``mean.f16``, ``std.f16`` (N x C x h x w), ``done.u8`` (one flag per
image, set only after its maps are on disk), ``crc.u32`` (a CRC32 per image, checked on
read) and ``meta.json`` (shape, input size, reduction and the fingerprint of ensemble + data
+ temperature + reduction). Building resumes where it stopped; a cache whose fingerprint
does not match is refused.

**Several processes** (``torchrun``): the images are dealt out by batch
(:mod:`udistill.sharding`), every rank writes its own rows with ``pwrite`` (disjoint byte
ranges, so ranks never share a dirty page) and the bytes equal a one-process build. The
folder must be on a file system every rank sees.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import UdistillError
from ..io import atomic_write_json, read_json, remove_stale_temp_files
from ..progress import progress as progress_bar
from ..sharding import barrier, broadcast_from_main, global_batches, is_main, my_batches

DEFAULT_REDUCTION = 4


class StaleCacheError(UdistillError):
    """The cache was built for another ensemble, data set, temperature or resolution."""


def cache_fingerprint(ensemble, dataset, reduction: int = 1) -> dict:
    data_fp = dataset.fingerprint() if hasattr(dataset, "fingerprint") else f"{type(dataset).__name__}:{len(dataset)}"
    fp = {
        "ensemble": ensemble.fingerprint(),
        "data": data_fp,
        "temperature": ensemble.temperature,
        "members": len(ensemble),
    }
    if reduction != 1:  # full-resolution caches keep the fingerprint they had before reduction existed
        fp["reduction"] = int(reduction)
    return fp


def reduced_size(size: tuple[int, int], reduction: int) -> tuple[int, int]:
    """The stored (h, w) of an (H, W) input at 1/``reduction`` (rounded up)."""
    return math.ceil(size[0] / reduction), math.ceil(size[1] / reduction)


def reduce_maps(maps: torch.Tensor, reduction: int) -> torch.Tensor:
    """Area average of float maps to 1/``reduction`` of their size.

    Shape: maps (N, C, H, W) -> (N, C, ceil(H / r), ceil(W / r))."""
    if reduction == 1:
        return maps
    h, w = maps.shape[-2:]
    if h % reduction == 0 and w % reduction == 0:
        return F.avg_pool2d(maps, reduction)
    return F.adaptive_avg_pool2d(maps, reduced_size((h, w), reduction))


def cache_nbytes(images: int, classes: int, size: tuple[int, int], reduction: int = DEFAULT_REDUCTION) -> int:
    """Bytes of a cache of ``images`` entries (two float16 maps each, CRC and flag)."""
    h, w = reduced_size(size, reduction)
    return images * (2 * classes * h * w * 2 + 4 + 1)


class CachedTargets:
    """Memory-mapped float16 teacher maps; ``get(index) -> (mean, std)`` as (C, h, w) tensors
    (h, w = the input size / ``reduction``)."""

    def __init__(self, folder: str | Path, verify: bool = True):
        self.folder = Path(folder)
        self.meta = read_json(self.folder / "meta.json", what="teacher cache metadata")
        n, c, h, w = self.meta["shape"]
        self.shape = (n, c, h, w)
        self.reduction = int(self.meta.get("reduction", 1))
        self.input_size = tuple(self.meta.get("input_size", (h, w)))
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
            raise UdistillError(
                f"{self.folder}: teacher cache entry {index} is corrupt (checksum mismatch); delete the folder and rebuild"
            )
        return torch.from_numpy(mean), torch.from_numpy(std)


def _crc(mean: np.ndarray, std: np.ndarray) -> int:
    return zlib.crc32(std.tobytes(), zlib.crc32(mean.tobytes())) & 0xFFFFFFFF


class _RowWriter:
    """Writes whole rows of the cache files with ``pwrite`` (no shared mmap pages between ranks)."""

    def __init__(self, folder: Path, shape: tuple[int, int, int, int]):
        self.row = int(np.prod(shape[1:])) * 2
        self.fds = {name: os.open(folder / name, os.O_RDWR) for name in ("mean.f16", "std.f16", "crc.u32", "done.u8")}

    def write(self, i: int, mean: np.ndarray, std: np.ndarray) -> None:
        os.pwrite(self.fds["mean.f16"], mean.tobytes(), i * self.row)
        os.pwrite(self.fds["std.f16"], std.tobytes(), i * self.row)
        os.pwrite(self.fds["crc.u32"], np.uint32(_crc(mean, std)).tobytes(), i * 4)

    def mark_done(self, indices) -> None:
        """Flags set only after the rows are on disk: a kill never leaves a flagged half-row."""
        for name in ("mean.f16", "std.f16", "crc.u32"):
            os.fsync(self.fds[name])
        for i in indices:
            os.pwrite(self.fds["done.u8"], b"\x01", int(i))
        os.fsync(self.fds["done.u8"])

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _prepare(ensemble, dataset, folder: Path, fp: dict, reduction: int, device) -> tuple[int, ...]:
    """Create the files and meta.json (or check an existing cache's fingerprint); the shape."""
    meta_path = folder / "meta.json"
    remove_stale_temp_files(folder)  # a meta.json half-written by a killed earlier run
    if meta_path.exists():
        meta = read_json(meta_path, what="teacher cache metadata")
        if meta.get("fingerprint") != fp:
            was = meta.get("fingerprint", {})
            raise StaleCacheError(
                f"{folder}: teacher cache is stale (built for ensemble {was.get('ensemble')}, data {was.get('data')}, "
                f"reduction {was.get('reduction', 1)}; now {fp['ensemble']}, {fp['data']}, reduction {reduction}); "
                "delete the folder to rebuild"
            )
        return tuple(meta["shape"])
    first = dataset[0]["image"]
    h, w = first.shape[-2:]
    with torch.no_grad():
        c = ensemble(first[None].to(device)).mean.shape[1]
    shape = (len(dataset), c, *reduced_size((h, w), reduction))
    folder.mkdir(parents=True, exist_ok=True)
    for name, dtype in (
        ("mean.f16", np.float16),
        ("std.f16", np.float16),
        ("crc.u32", np.uint32),
        ("done.u8", np.uint8),
    ):
        n_items = int(np.prod(shape)) if name.endswith("f16") else shape[0]
        np.memmap(folder / name, dtype, "w+", shape=(n_items,)).flush()
    atomic_write_json(
        meta_path,
        {
            "shape": list(shape),
            "input_size": [int(h), int(w)],
            "reduction": int(reduction),
            "fingerprint": fp,
            "dtype": "float16",
        },
    )
    return shape


@torch.no_grad()
def build_cache(
    ensemble,
    dataset: Dataset,
    folder: str | Path,
    device="cpu",
    batch_size: int = 4,
    progress: bool = True,
    reduction: int = DEFAULT_REDUCTION,
    num_workers: int = 0,
) -> CachedTargets:
    """Compute (or finish computing) the cache of M and Sigma for every image of ``dataset``,
    at 1/``reduction`` of the input size; under ``torchrun`` every rank computes its share."""
    if reduction < 1:
        raise UdistillError(f"config key 'distill.cache_reduction': expected an integer >= 1, got {reduction}")
    folder = Path(folder)
    fp = cache_fingerprint(ensemble, dataset, reduction)
    setup = None
    if is_main():
        try:
            setup = ("ok", _prepare(ensemble, dataset, folder, fp, reduction, device))
        except UdistillError as exc:  # every rank raises it, none waits at the barrier
            setup = ("error", exc)
    setup = broadcast_from_main(setup)
    if setup[0] == "error":
        raise setup[1]
    shape = tuple(setup[1])
    input_size = tuple(read_json(folder / "meta.json", what="teacher cache metadata").get("input_size", shape[2:]))
    done = np.fromfile(folder / "done.u8", np.uint8, count=shape[0])
    todo = [i for i in range(shape[0]) if not done[i]]
    mine = my_batches(global_batches(todo, batch_size))
    if mine:
        writer = _RowWriter(folder, shape)
        loader = DataLoader(_Indexed(dataset), batch_sampler=[batch for _, batch in mine], num_workers=num_workers)

        try:
            for idx, images in progress_bar(loader, "teacher cache", len(loader), enabled=progress):
                if tuple(images.shape[-2:]) != input_size:
                    raise UdistillError(
                        f"teacher cache needs one image size; got {tuple(images.shape[-2:])}, expected {input_size} (set data.size)"
                    )
                out = ensemble(images.to(device))
                m = reduce_maps(out.mean.float(), reduction).cpu().numpy().astype(np.float16)
                s = reduce_maps(out.std.float(), reduction).cpu().numpy().astype(np.float16)
                for j, i in enumerate(idx.tolist()):
                    writer.write(i, m[j], s[j])
                writer.mark_done(idx.tolist())
        finally:
            writer.close()
    barrier()
    return CachedTargets(folder)


class _Indexed(Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        return idx, self.dataset[idx]["image"]
