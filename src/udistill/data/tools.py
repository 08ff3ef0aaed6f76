"""Dataset utilities: check a dataset on disk, export one in CamVid's layout, preview a few items.

from udistill.data.tools import check_dataset, export_dataset, preview_grid
summary = check_dataset("camvid", "/data/camvid", "train")      # problems, class histogram
export_dataset("synthetic", "out/synth", "train", count=50)      # readable as camvid
preview_grid(build_dataset("camvid", "val", root="/data/camvid"), "preview.png")
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path, atomic_write_text
from .base import make_item
from .camvid import SEGNET_PREFIX, UNLABELLED
from .labels import CAMVID11, IGNORE_INDEX, map_labels
from .registry import build_dataset

__all__ = ["check_dataset", "print_summary", "export_dataset", "preview_grid"]


def _builder_accepts(name: str, option: str) -> bool:
    from .registry import _REGISTRY, _load_builtin

    _load_builtin()
    fn = _REGISTRY.get(name)
    if fn is None:
        return False
    return option in inspect.signature(fn).parameters  # named explicitly, not swallowed by **options


def check_dataset(name: str, root=None, split: str = "train", **options) -> dict:
    """Read every item of a dataset and report what is wrong, without stopping at the first problem.

    Checks each pair: both files readable, image and label the same size, label values inside
    the scheme. An image without a label is reported too (the loaders are built with
    ``strict=False`` where they support it). A missing root still raises DataError.

    Returns ``{"dataset", "split", "root", "scheme", "count", "ok", "problems": [(file, message)],
    "class_histogram": {class: pixels}, "ignore_pixels", "sizes": {"WxH": n}}``.
    """
    if "strict" not in options and _builder_accepts(name, "strict"):
        options["strict"] = False
    ds = build_dataset(name, split, root=root, **options)
    scheme = ds.scheme
    problems: list[tuple[str, str]] = [tuple(p) for p in getattr(ds, "problems", [])]
    counts = np.zeros(256, np.int64)
    sizes: dict[str, int] = {}
    ok = 0
    for i in range(len(ds)):
        source = ds.source(i)
        try:
            image, label, item_name, depth = ds.load(i)
            make_item(image, label, item_name, depth, None, scheme, source)
        except DataError as exc:
            problems.append((source, str(exc)))
            continue
        label = np.asarray(label).astype(np.int64)
        counts += np.bincount(label.ravel().clip(0, 255), minlength=256)
        key = f"{label.shape[1]}x{label.shape[0]}"
        sizes[key] = sizes.get(key, 0) + 1
        ok += 1
    return {
        "dataset": name,
        "split": split,
        "root": None if root is None else str(root),
        "scheme": scheme.name,
        "count": len(ds) + len(getattr(ds, "problems", [])),
        "ok": ok,
        "problems": problems,
        "class_histogram": {c: int(counts[k]) for k, c in enumerate(scheme.classes)},
        "ignore_pixels": int(counts[IGNORE_INDEX]),
        "sizes": sizes,
    }


def print_summary(summary: dict, file=None, max_problems: int = 20) -> None:
    """Print a :func:`check_dataset` summary for people: counts, problems, class shares, sizes."""
    import sys

    out = file or sys.stdout
    where = f" at {summary['root']}" if summary.get("root") else ""
    print(
        f"{summary['dataset']}/{summary['split']}{where}: {summary['ok']} of {summary['count']} items OK "
        f"({summary['scheme']})",
        file=out,
    )
    problems = summary["problems"]
    if problems:
        print(f"{len(problems)} problem(s):", file=out)
        for _, message in problems[:max_problems]:
            print(f"  {message}", file=out)
        if len(problems) > max_problems:
            print(f"  ... and {len(problems) - max_problems} more", file=out)
    hist = summary["class_histogram"]
    total = sum(hist.values()) + summary["ignore_pixels"]
    if total:
        print("pixels per class:", file=out)
        for name, count in sorted(hist.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<14} {100.0 * count / total:6.2f} %", file=out)
        print(f"  {'(ignore)':<14} {100.0 * summary['ignore_pixels'] / total:6.2f} %", file=out)
        missing = [name for name, count in hist.items() if count == 0]
        if missing:
            print(f"classes never seen: {', '.join(missing)}", file=out)
    if summary["sizes"]:
        print("sizes (WxH): " + ", ".join(f"{k} x{v}" for k, v in sorted(summary["sizes"].items())), file=out)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)) or "item"


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def export_dataset(
    name: str,
    out,
    split: str = "train",
    count: int | None = None,
    size=None,
    shift=None,
    seed: int = 0,
    root=None,
    depth: bool = True,
    **options,
) -> int:
    """Write ``count`` items of a dataset (normally synthetic) to ``out`` in CamVid's SegNet layout.

    Writes ``{split}/<name>.png`` (RGB), ``{split}annot/<name>.png`` (CamVid-11 ids, ignore
    written as 11 = Unlabelled), ``{split}.txt`` with SegNet's ``/SegNet/CamVid/`` prefix and,
    when items carry depth and ``depth`` is true, ``{split}depth/<name>.npy`` (float32 metres).
    ``build_dataset("camvid", split, root=out)`` then yields the same items (images exactly
    when they were uint8 to begin with, i.e. not resized). Labels in another scheme are mapped
    into CamVid-11 (lossy; see labels.py). Returns the number of items written.
    """
    ds = build_dataset(name, split, root=root, shift=shift, size=size, seed=seed, **options)
    n = len(ds) if count is None else min(int(count), len(ds))
    if n <= 0:
        raise DataError(f"{name}: nothing to export (count={count}, dataset has {len(ds)} items)")
    out = Path(out)
    lines = []
    seen: set[str] = set()
    for i in range(n):
        item = ds[i]
        stem = _safe_name(item["name"])
        if stem in seen:
            raise DataError(f"{ds.source(i)}: two items are named '{stem}'; CamVid needs unique file names")
        seen.add(stem)
        image = (item["image"].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        label = item["label"].numpy()
        if ds.scheme.name != CAMVID11.name:
            try:
                label = map_labels(label, ds.scheme.name, CAMVID11.name)
            except ValueError as exc:
                raise DataError(f"{name}: cannot export labels as CamVid-11 ({exc})") from None
        label = np.where(label == IGNORE_INDEX, UNLABELLED, label).astype(np.uint8)
        fname = f"{stem}.png"
        _write_png(out / split / fname, np.ascontiguousarray(image))
        _write_png(out / f"{split}annot" / fname, label)
        if depth and "depth" in item:
            with atomic_path(out / f"{split}depth" / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, item["depth"].numpy().astype(np.float32), allow_pickle=False)
        lines.append(f"{SEGNET_PREFIX}{split}/{fname} {SEGNET_PREFIX}{split}annot/{fname}")
    atomic_write_text(out / f"{split}.txt", "\n".join(lines) + "\n")
    return n


def preview_grid(dataset, out_png, count: int = 4, seed: int = 0) -> Path:
    """Write a PNG grid (150 dpi): one row per item, image | coloured label | depth (when present)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    n = min(int(count), len(dataset))
    if n <= 0:
        raise DataError("preview_grid: the dataset is empty")
    rng = np.random.default_rng(seed)
    indices = sorted(rng.choice(len(dataset), size=n, replace=False).tolist())
    items = [dataset[i] for i in indices]
    with_depth = any("depth" in it for it in items)
    cols = 3 if with_depth else 2
    h, w = items[0]["label"].shape
    fig = Figure(figsize=(3.2 * cols, 3.2 * n * h / max(w, 1) + 0.4 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, cols, squeeze=False)
    scheme = dataset.scheme
    for row, item in zip(axes, items):
        row[0].imshow(item["image"].permute(1, 2, 0).numpy())
        row[0].set_title(item["name"], fontsize=8)
        row[1].imshow(scheme.colorize(item["label"].numpy()), interpolation="nearest")
        row[1].set_title(f"label ({scheme.name})", fontsize=8)
        if with_depth:
            if "depth" in item:
                d = item["depth"].numpy()
                # log scale: sky sits at ~1000 m and would flatten everything else
                norm = LogNorm(vmin=max(float(d.min()), 0.5), vmax=max(float(d.max()), 1.0))
                im = row[2].imshow(d.clip(0.5, None), cmap="magma_r", norm=norm)
                fig.colorbar(im, ax=row[2], fraction=0.046, pad=0.02, label="m")
            row[2].set_title("depth", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    return out_png
