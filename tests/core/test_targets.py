import numpy as np
import pytest
import torch

from toy import ToyDataset
from udistill.core.ensemble import Ensemble
from udistill.core.losses import distillation_loss
from udistill.data.transforms import Augment
from udistill.models import build_model
from udistill.pipeline.targets import CachedTargets, StaleCacheError, build_cache, cache_nbytes, reduce_maps
from udistill.train.views import TrainView


@pytest.fixture
def ensemble(tiny_model_cfg):
    members = []
    for k in range(3):
        torch.manual_seed(k)
        members.append(build_model(tiny_model_cfg, 3).eval())
    return Ensemble(members)


@pytest.mark.parametrize("reduction", [1, 4])
def test_cached_equals_online_on_unaugmented_images(tmp_path, ensemble, reduction):
    data = ToyDataset(5)
    cache = build_cache(ensemble, data, tmp_path / "cache", batch_size=2, progress=False, reduction=reduction)
    assert cache.shape == (5, 3, 32 // reduction, 48 // reduction) and cache.reduction == reduction
    for name in ("mean.f16", "std.f16"):  # the size the dry run announces is the size on disk
        assert (tmp_path / "cache" / name).stat().st_size * 2 + 5 * 5 == cache_nbytes(5, 3, (32, 48), reduction)
    for i in range(len(data)):
        online = ensemble(data[i]["image"][None])
        mean, std = cache.get(i)
        assert mean.dtype == torch.float16
        # area averages of the float32 maps, then float16
        np.testing.assert_allclose(mean.float().numpy(), reduce_maps(online.mean, reduction)[0].numpy(), atol=1e-3)
        np.testing.assert_allclose(std.float().numpy(), reduce_maps(online.std, reduction)[0].numpy(), atol=1e-3)
    if reduction > 1:  # the stored cells are block means, not samples
        block = online.mean[0, :, :reduction, :reduction].mean((1, 2))
        np.testing.assert_allclose(mean[:, 0, 0].float().numpy(), block.numpy(), atol=1e-3)


def test_cached_maps_follow_flip_and_crop(tmp_path, ensemble):
    """Teacher maps that encode the pixel position stay aligned with the image under augmentation."""
    data = ToyDataset(3)

    class PositionTargets:
        def get(self, index):
            img = data[index]["image"]
            return img.half(), (1 - img).half()  # maps equal to the image itself

    view = TrainView(data, Augment(flip=True, scale=(1.2, 1.8)), seed=3, targets=PositionTargets())
    flips = set()
    for epoch in range(6):
        view.epoch = epoch
        for i in range(len(data)):
            item = view[i]
            np.testing.assert_allclose(item["teacher_mean"].float().numpy(), item["image"].numpy(), atol=2e-3)
            flips.add(bool(torch.equal(item["image"], data[i]["image"])))
    assert False in flips  # augmentation did change the images


class RampDataset:
    """Images whose channels are the row, the column and their sum: a map that moves with the
    image is told apart from one that is off by a single pixel (1/32 resp. 1/48)."""

    def __init__(self, n=3, h=32, w=48):
        y = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) / h
        x = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) / w
        self.n, self.image = n, torch.stack([y, x, (x + y) / 2])

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {
            "image": self.image * (1 + 0.1 * i),
            "label": torch.zeros(self.image.shape[1:], dtype=torch.long),
            "name": str(i),
        }


@pytest.mark.parametrize("reduction", [2, 4])
def test_reduced_cache_follows_flip_scale_and_crop(reduction):
    """At 1/r the cached maps after the view equal the area average of the augmented image's
    own maps (inside the outer ring of cells, where the image's edge clamps both)."""
    data = RampDataset()

    class PositionTargets:
        def get(self, index):
            m = reduce_maps(data[index]["image"][None], reduction)[0]
            return m.half(), (1 - m).half()

    view = TrainView(data, Augment(flip=True, scale=(1.2, 1.8)), seed=3, targets=PositionTargets())
    flips, worst = set(), 0.0
    for epoch in range(6):
        view.epoch = epoch
        for i in range(len(data)):
            item = view[i]
            assert item["teacher_mean"].shape == (3, 32 // reduction, 48 // reduction)
            want = reduce_maps(item["image"][None], reduction)[0][:, 1:-1, 1:-1]
            got = item["teacher_mean"].float()[:, 1:-1, 1:-1]
            np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-3)
            np.testing.assert_allclose(
                (1 - item["teacher_std"].float())[:, 1:-1, 1:-1].numpy(), want.numpy(), atol=2e-3
            )
            worst = max(
                worst,
                float((item["teacher_mean"].float() - reduce_maps(item["image"][None], reduction)[0]).abs().max()),
            )
            flips.add(bool(item["image"][1, 0, 0] > item["image"][1, 0, -1]))
    assert flips == {True, False}  # both flipped and unflipped views occurred
    assert worst < 0.05  # the outer ring is off by at most the clamped edge, not by a whole cell


def test_loss_upsamples_reduced_teacher_maps():
    """The loss at reduced targets is the loss at the bilinearly upsampled targets, and the
    upsampled M is still a distribution at every pixel."""
    torch.manual_seed(0)
    logits, sigma = torch.randn(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    mean = torch.softmax(torch.randn(2, 3, 8, 12), 1)
    std = torch.rand(2, 3, 8, 12) * 0.1
    labels = torch.randint(0, 3, (2, 32, 48))
    up = [torch.nn.functional.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False) for x in (mean, std)]
    torch.testing.assert_close(up[0].sum(1), torch.ones(2, 32, 48))
    a = distillation_loss(logits, sigma, mean.half(), std.half(), labels)
    b = distillation_loss(logits, sigma, up[0], up[1], labels)
    assert float(a.total) == pytest.approx(float(b.total), rel=2e-3)
    # a student that outputs exactly the upsampled maps has zero KL and zero σ error
    exact = distillation_loss(torch.log(up[0]), up[1], mean, std, labels)
    assert float(exact.distill) < 1e-6 and float(exact.unc) < 1e-10


def test_stale_cache_is_refused_and_resume_completes(tmp_path, ensemble, tiny_model_cfg):
    data = ToyDataset(4)
    folder = tmp_path / "cache"
    build_cache(ensemble, data, folder, batch_size=2, progress=False)
    # a partly built cache resumes: clear one flag and rebuild
    done = np.memmap(folder / "done.u8", np.uint8, "r+", shape=(4,))
    done[2] = 0
    done.flush()
    with pytest.raises(Exception, match="incomplete"):
        CachedTargets(folder)
    build_cache(ensemble, data, folder, batch_size=2, progress=False)
    torch.manual_seed(99)
    other = Ensemble([build_model(tiny_model_cfg, 3).eval()])
    with pytest.raises(StaleCacheError, match="stale"):
        build_cache(other, data, folder, progress=False)
    with pytest.raises(StaleCacheError, match="stale"):
        build_cache(ensemble, ToyDataset(4, seed=5), folder, progress=False)
    with pytest.raises(StaleCacheError, match="reduction 4; now .* reduction 2"):
        build_cache(ensemble, data, folder, progress=False, reduction=2)


def test_corrupt_cache_entry_is_detected(tmp_path, ensemble):
    data = ToyDataset(2)
    folder = tmp_path / "cache"
    cache = build_cache(ensemble, data, folder, progress=False)
    mm = np.memmap(folder / "mean.f16", np.float16, "r+", shape=cache.shape)
    mm[1, 0, 0, 0] += 1
    mm.flush()
    with pytest.raises(Exception, match="checksum"):
        CachedTargets(folder).get(1)
