import numpy as np
import pytest
import torch

from toy import ToyDataset
from udistill.data.transforms import Augment
from udistill.ensemble import Ensemble
from udistill.models import build_model
from udistill.targets import CachedTargets, StaleCacheError, build_cache
from udistill.train.views import TrainView


@pytest.fixture
def ensemble(tiny_model_cfg):
    members = []
    for k in range(3):
        torch.manual_seed(k)
        members.append(build_model(tiny_model_cfg, 3).eval())
    return Ensemble(members)


def test_cached_equals_online_on_unaugmented_images(tmp_path, ensemble):
    data = ToyDataset(5)
    cache = build_cache(ensemble, data, tmp_path / "cache", batch_size=2, progress=False)
    for i in range(len(data)):
        online = ensemble(data[i]["image"][None])
        mean, std = cache.get(i)
        assert mean.dtype == torch.float16
        np.testing.assert_allclose(mean.float().numpy(), online.mean[0].numpy(), atol=1e-3)
        np.testing.assert_allclose(std.float().numpy(), online.std[0].numpy(), atol=1e-3)


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


def test_corrupt_cache_entry_is_detected(tmp_path, ensemble):
    data = ToyDataset(2)
    folder = tmp_path / "cache"
    cache = build_cache(ensemble, data, folder, progress=False)
    mm = np.memmap(folder / "mean.f16", np.float16, "r+", shape=cache.shape)
    mm[1, 0, 0, 0] += 1
    mm.flush()
    with pytest.raises(Exception, match="checksum"):
        CachedTargets(folder).get(1)
