import dataclasses

import pytest
import torch

from toy import ToyDataset
from udistill.config import TrainConfig
from udistill.errors import TrainingError
from udistill.models import build_model, load_model
from udistill.models.checkpoint import load_state
from udistill.train import fit
from udistill.train.loop import STATE_FILE, supervised_objective

CFG = TrainConfig(epochs=3, batch_size=4, lr=0.05, deterministic=True, progress=False, augment="basic")


def _train(tmp, model_cfg, objective=None, cfg=CFG):
    torch.manual_seed(0)
    model = build_model(model_cfg, 3)
    fit(model, ToyDataset(8), ToyDataset(4, seed=1), cfg, tmp, 3, objective=objective)
    return load_model(tmp / "model.safetensors")[0].state_dict()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_model_cfg):
    ref = _train(tmp_path / "ref", tiny_model_cfg)
    base = supervised_objective()
    calls = {"n": 0}

    def crashing(model, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # second step of the second epoch
            raise KeyboardInterrupt
        return base(model, batch)

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", tiny_model_cfg, objective=crashing)
    assert load_state(tmp_path / "run" / STATE_FILE)["epoch"] == 1
    _assert_same(_train(tmp_path / "run", tiny_model_cfg), ref)
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + CFG.epochs and "val_miou" in rows[0]


def test_non_finite_loss_stops_with_last_good_state(tmp_path, tiny_model_cfg):
    base = supervised_objective()
    calls = {"n": 0}

    def exploding(model, batch):
        calls["n"] += 1
        loss, parts = base(model, batch)
        return (loss * float("nan"), parts) if calls["n"] == 4 else (loss, parts)

    with pytest.raises(TrainingError, match="nan"):
        _train(tmp_path, tiny_model_cfg, objective=exploding)
    assert load_state(tmp_path / STATE_FILE)["epoch"] == 1
    assert not (tmp_path / "model.safetensors").exists()


def test_a_member_learns_the_toy_task(tmp_path, tiny_model_cfg):
    cfg = dataclasses.replace(CFG, epochs=6, lr=0.1, deterministic=False)
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg, 3)
    hist = fit(model, ToyDataset(16), ToyDataset(4, seed=1), cfg, tmp_path, 3)["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_rng_state_round_trip_restores_every_generator():
    import random

    import numpy as np

    from udistill.train.loop import _rng_state, _set_rng_state

    np.random.rand(7)
    random.random()
    saved = _rng_state()
    expect = (torch.rand(3), np.random.rand(3), random.random())
    _set_rng_state(saved)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]
