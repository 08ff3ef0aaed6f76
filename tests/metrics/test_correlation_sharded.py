"""The agreement sample keyed by image index: meters fed disjoint images (as ranks are) and
merged hold exactly the sample of one meter fed every image."""

import numpy as np

from udistill.metrics import CorrelationMeter


def _images(n=12, size=300, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        y = rng.random(size)
        yield i, y + 0.3 * rng.random(size), y, rng.integers(0, 3, size)


def test_merged_shards_equal_one_meter_when_the_sample_is_bounded():
    one = CorrelationMeter(max_samples=500, per_class_samples=100)
    shards = [CorrelationMeter(max_samples=500, per_class_samples=100) for _ in range(2)]
    for i, x, y, c in _images():
        one.update(x, y, cls=c, item=i)
        shards[(i // 2) % 2].update(x, y, cls=c, item=i)  # batches of two dealt to two ranks
    merged = shards[1].merge(shards[0])  # any order
    a, b = one.compute(), merged.compute()
    assert a["n"] == b["n"] == 3600 and a["n_sampled"] == b["n_sampled"] == 500
    assert a["spearman"] == b["spearman"]
    assert abs(a["pearson"] - b["pearson"]) < 1e-12
    for k in a["per_class"]:
        assert a["per_class"][k]["spearman"] == b["per_class"][k]["spearman"]
    assert one.ratio_by_decile() == merged.ratio_by_decile()
    assert one.binned_means() == merged.binned_means()


def test_without_item_keys_shards_draw_other_samples():
    """The control: per-meter random keys (the old behaviour) pick a different sample."""
    one = CorrelationMeter(max_samples=500)
    shards = [CorrelationMeter(max_samples=500) for _ in range(2)]
    for i, x, y, _ in _images():
        one.update(x, y)
        shards[(i // 2) % 2].update(x, y)
    assert one.compute()["spearman"] != shards[0].merge(shards[1]).compute()["spearman"]
