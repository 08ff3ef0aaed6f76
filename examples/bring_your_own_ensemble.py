"""Bring your own ensemble: distil three segmentation models into one student with an
uncertainty head, then raise an out-of-distribution alarm, using only the public core.

Everything is built here, offline, in about 20 s on 2 CPU cores: a toy scene data set
(coloured rectangles on a grey background, 4 classes), three smp U-Nets trained briefly
on its labels (your ensemble would come with its own weights), a student distilled from
them, and an alarm calibrated at a 5% false-alarm rate. Nothing is written to disk.

    python examples/bring_your_own_ensemble.py
"""

from __future__ import annotations

import copy
import time

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from udistill import Alarm, Distiller, Ensemble, add_uncertainty_head, image_score, pixel_uncertainty

SIZE, CLASSES = 32, 4
COLOURS = torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.3, 0.9]])


def scenes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey background (class 0) with up to three coloured rectangles (classes 1-3)."""
    images = 0.5 + 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    labels = torch.zeros(n, SIZE, SIZE, dtype=torch.long)
    for i in range(n):
        for c in range(3):
            y, x, h, w = torch.randint(0, SIZE - 6, (4,), generator=generator).tolist()
            h, w = 6 + h % 12, 6 + w % 12
            images[i, :, y : y + h, x : x + w] = COLOURS[c, :, None, None] + 0.05 * torch.randn(
                3, min(h, SIZE - y), min(w, SIZE - x), generator=generator
            )
            labels[i, y : y + h, x : x + w] = c + 1
    return images.clamp(0, 1), labels


def altered(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Heavily altered frames (a camera fault): inverted colours and strong noise."""
    noise = 0.3 * torch.randn(images.shape, generator=generator)
    return (1 - images + noise).clamp(0, 1)


def perturbed(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training views for distillation (not the alteration tested below): noise and a
    brightness / contrast change, so σ sees inputs where the members disagree."""
    n = images.shape[0]
    gain = 0.5 + torch.rand(n, 1, 1, 1, generator=generator)
    noise = 0.15 * torch.randn(images.shape, generator=generator)
    return ((images - 0.5) * gain + 0.5 + noise).clamp(0, 1)


def unet() -> torch.nn.Module:
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8), classes=CLASSES)


def train_on_labels(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
    """Your own training; here a few Adam steps on the toy labels."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
    step = 0
    while step < steps:
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            step += 1
            if step == steps:
                break
    model.eval()


def main() -> None:
    start = time.perf_counter()
    torch.manual_seed(0)  # your seeds: udistill sets none
    g = torch.Generator().manual_seed(0)
    train_x, train_y = scenes(160, g)
    calib_x, _ = scenes(40, g)  # in-distribution frames for the alarm (not trained on)
    test_x, _ = scenes(4, g)

    # 1. your ensemble: three models trained on your labels (here: 80 steps each)
    members = []
    for k in range(3):
        torch.manual_seed(k)
        model = unet()
        train_on_labels(model, train_x, train_y, steps=80)
        members.append(model)
    teacher = Ensemble(members)  # any nn.Module returning logits (or .logits, or {"out": ...})

    # 2. the student: one of the members plus an uncertainty head (sigmoid σ per class)
    student = add_uncertainty_head(copy.deepcopy(members[0]), head="paper", head_channels=32)

    # 3. distil M and Σ of the ensemble on clean and perturbed views (online targets: the
    #    ensemble runs on each batch; perturbed views carry no labels: 255 = ignore)
    views = torch.cat([train_x, perturbed(train_x[:48], g)])
    loader = DataLoader(TensorDataset(views, torch.cat([train_y, torch.full((48, SIZE, SIZE), 255)])), 16, True)
    history = Distiller(student, teacher, lr=2e-3, sigma_init="teacher-mean").fit(loader, epochs=15)
    print(f"distillation loss {history[0]['loss']:.4f} -> {history[-1]['loss']:.4f}")

    # 4. the alarm: image score = mean U over the frame, threshold at 5% false alarms
    student.eval()
    alarm = Alarm.calibrate(calib_x, false_alarm_rate=0.05, student=student, score="mean")
    print(f"alarm threshold {alarm.threshold:.4f} on {alarm.n} calibration frames")

    with torch.no_grad():
        for name, frames in (("clean", test_x), ("altered", altered(test_x, g))):
            u = pixel_uncertainty(student(frames))  # (N, H, W): mean σ over classes
            teacher_u = pixel_uncertainty(teacher(frames))  # the ensemble's mean Σ, for comparison
            flags = alarm(frames)
            for i in range(len(frames)):
                print(
                    f"{name:8s} frame {i}: student U {image_score(u[i], 'mean'):.4f} "
                    f"(ensemble {image_score(teacher_u[i], 'mean'):.4f})  alarm: {'ON' if flags[i] else 'off'}"
                )
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
