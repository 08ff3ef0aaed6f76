"""A reference point against published CamVid figures: one baseline model (member 0's recipe
of ``configs/camvid-cpu.yaml``) trained on *all* training sequences, its mIoU on *all* 233
test frames (Seq05VD and 0001TP) at the same resolution as the experiment.

The uncertainty experiment holds the dusk sequence 0001TP out of training (it is its natural
shift); published CamVid numbers train on every training sequence and test on the whole test
split, so this model answers "how good is the segmentation itself". Trained from scratch
(no ImageNet weights: no network on the build machine). Resumable: rerun the same command.

    UDISTILL_CAMVID=/path/to/camvid python benchmarks/camvid_all_sequences.py \
        --out runs/camvid-all-sequences --json benchmarks/results/camvid-cpu/all-sequences.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the experiment's config, without its hold-out: every training sequence, every test frame
ALL_SEQUENCES = [
    "data.train_options={}",
    "data.role_options={}",
    "data.val_split=val",  # the official val (the experiment validates on held-out training frames)
    "data.shifts=[]",
    "data.val_shifts=[]",
    "teacher.members=1",
]
TEST_SEQUENCES = ("Seq05VD", "0001TP")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "camvid-cpu.yaml"))
    ap.add_argument("--out", default="runs/camvid-all-sequences")
    ap.add_argument("--json", default=None, help="write the numbers here (and a .md beside it)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    from udistill.config import ExperimentConfig, load_config
    from udistill.data.from_config import dataset_for
    from udistill.device import resolve_device
    from udistill.io import atomic_write_json, atomic_write_text
    from udistill.models.checkpoint import load_model
    from udistill.pipeline.teacher import train_member
    from udistill.train.loop import validate

    cfg = load_config(ExperimentConfig, args.config, [*ALL_SEQUENCES, f"out_dir={args.out}", *args.overrides])
    path = train_member(cfg, 0)
    dev = resolve_device(cfg.device)
    test = dataset_for(cfg.data, "test")
    model, _ = load_model(path, expect=cfg.model, num_classes=test.scheme.num_classes, heads="prediction")
    model.to(dev)
    result = {
        "what": "baseline (member 0 recipe) trained on all CamVid training sequences, test mIoU",
        "config": args.config,
        "overrides": ALL_SEQUENCES + list(args.overrides),
        "size": list(cfg.data.size),
        "train_images": len(dataset_for(cfg.data, "train")),
        "epochs": cfg.train.epochs,
        "encoder": cfg.model.encoder,
        "encoder_weights": cfg.model.encoder_weights,
        "test": {"images": len(test), **_summary(validate(model, test, test.scheme.num_classes, dev))},
        "classes": list(test.scheme.classes),
    }
    for seq in TEST_SEQUENCES:
        part = dataset_for(cfg.data, "test", sequences=[seq])
        result[f"test_{seq}"] = {"images": len(part), **_summary(validate(model, part, part.scheme.num_classes, dev))}
    text = _markdown(result)
    print(text)
    if args.json:
        out = Path(args.json)
        atomic_write_json(out, result)
        atomic_write_text(out.with_suffix(".md"), text)
    return 0


def _summary(metrics: dict) -> dict:
    return {
        "miou": float(metrics["miou"]),
        "pixel_accuracy": float(metrics["pixel_accuracy"]),
        "per_class_iou": [float(v) for v in metrics["per_class_iou"]],
    }


def _markdown(r: dict) -> str:
    h, w = r["size"]
    rows = [("all 233 test frames" if r["test"]["images"] == 233 else "test", r["test"])]
    rows += [(f"test {seq}", r[f"test_{seq}"]) for seq in TEST_SEQUENCES]
    lines = [
        f"# CamVid baseline on all training sequences ({r['train_images']} images, {r['epochs']} epochs, "
        f"{r['encoder']}, {'no pretrained weights' if not r['encoder_weights'] else r['encoder_weights']}, {w}x{h})",
        "",
        "| test set | images | mIoU | pixel accuracy |",
        "|---|---|---|---|",
        *(f"| {name} | {d['images']} | {d['miou']:.3f} | {d['pixel_accuracy']:.3f} |" for name, d in rows),
        "",
        "Per-class IoU (all test frames): "
        + ", ".join(f"{c} {v:.2f}" for c, v in zip(r["classes"], r["test"]["per_class_iou"])),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
