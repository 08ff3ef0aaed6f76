"""Training-loop options: precision (fp32/fp16/bf16, the ``amp`` alias), channels-last,
torch.compile, BatchNorm synchronised across DDP ranks, and progress bars that change nothing."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from processes import child_env, torchrun_cmd
from torch import nn

from toy import ToyDataset
from udistill.config import TrainConfig
from udistill.errors import ConfigError
from udistill.models import build_model, load_model, read_metadata
from udistill.models.checkpoint import load_state
from udistill.train.batchnorm import CrossRankBatchNorm2d, convert_cross_rank_batchnorm
from udistill.train.loop import STATE_FILE, fit, supervised_objective
from udistill.train.precision import resolve_precision

ONE_STEP = TrainConfig(epochs=1, batch_size=4, lr=0.05, deterministic=True, progress=False, max_iters_per_epoch=1)


def _one_step(tmp, model_cfg, **train):
    """Fit one step; returns (initial weights, saved weights, dtypes of the logits the loss saw)."""
    torch.manual_seed(0)
    model = build_model(model_cfg, 3)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}  # parameters only, no BN buffers
    base, seen = supervised_objective(), []

    def objective(m, batch):
        out = m(batch["image"])
        seen.append(out.logits.dtype)
        return base(lambda _: out, batch)

    fit(model, ToyDataset(4), None, dataclasses.replace(ONE_STEP, **train), tmp, 3, objective=objective)
    return before, load_model(tmp / "model.safetensors")[0].state_dict(), seen


def _changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------------------- precision
def test_amp_is_an_alias_for_fp16_on_cuda_only_and_precision_wins():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_precision(TrainConfig(amp=True), cpu) == "fp32"
    assert resolve_precision(TrainConfig(amp=True), cuda) == "fp16"
    assert resolve_precision(TrainConfig(amp=False), cuda) == "fp32"
    assert resolve_precision(TrainConfig(amp=True, precision="bf16"), cuda) == "bf16"
    assert resolve_precision(TrainConfig(amp=False, precision="FP16"), cpu) == "fp16"
    with pytest.raises(ConfigError, match="fp32, fp16, bf16"):
        resolve_precision(TrainConfig(precision="fp8"), cpu)


@pytest.mark.parametrize(
    "precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_each_precision_trains_a_step_on_cpu(tmp_path, tiny_model_cfg, precision, dtype):
    if precision == "fp16":
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                nn.Conv2d(3, 3, 3)(torch.rand(1, 3, 8, 8))
            torch.amp.GradScaler("cpu")
        except (RuntimeError, AttributeError, TypeError) as exc:
            pytest.skip(f"fp16 autocast / GradScaler on CPU not supported by this torch: {exc}")
    before, after, seen = _one_step(tmp_path, tiny_model_cfg, precision=precision)
    assert seen == [dtype]  # the forward ran under autocast to that dtype
    assert _changed(before, after) and all(torch.isfinite(after[k]).all() for k in before)
    assert ("scaler" in load_state(tmp_path / STATE_FILE)) == (precision == "fp16")


# --------------------------------------------------------------------------- speed options
def test_channels_last_and_compile_train_a_step_and_save_plain_weights(tmp_path, tiny_model_cfg):
    before, after, _ = _one_step(tmp_path, tiny_model_cfg, channels_last=True, compile="eager")
    assert set(before) <= set(after)  # no "_orig_mod." prefixes from torch.compile
    assert _changed(before, after)
    assert read_metadata(tmp_path / "model.safetensors")["train"]["compile"] == "eager"


def test_a_progress_bar_does_not_change_the_result(tmp_path, tiny_model_cfg):
    # tqdm.auto's bar calls iter() on the DataLoader once more, which draws from torch's RNG
    _, quiet, _ = _one_step(tmp_path / "quiet", tiny_model_cfg, max_iters_per_epoch=None, epochs=2)
    _, shown, _ = _one_step(tmp_path / "shown", tiny_model_cfg, max_iters_per_epoch=None, epochs=2, progress=True)
    for k in quiet:
        torch.testing.assert_close(shown[k], quiet[k], rtol=0, atol=0, msg=k)


# --------------------------------------------------------------------------- BatchNorm across ranks
def test_converted_batchnorm_keeps_timm_activations(tiny_model_cfg):
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg, 3)
    x = torch.rand(2, 3, 32, 48)
    model.eval()
    ref = model(x).logits
    converted = convert_cross_rank_batchnorm(model)
    assert converted is model and any(isinstance(m, CrossRankBatchNorm2d) for m in model.modules())
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    torch.testing.assert_close(model(x).logits, ref, rtol=0, atol=0)  # BatchNormAct2d's act kept
    model.train()
    torch.manual_seed(1)
    train_out = model(x).logits  # one process: plain batch statistics
    assert torch.isfinite(train_out).all()


@pytest.mark.slow  # two gloo processes
def test_cross_rank_batchnorm_equals_batchnorm_over_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    sys.path.insert(0, str(Path(__file__).parent))
    import crossrank_worker

    mp.spawn(crossrank_worker.run, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))

    torch.manual_seed(0)
    full = torch.randn(6, 3, 5, 4) * 3 + 1
    upstream = torch.randn(6, 3, 5, 4)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = full.clone().requires_grad_(True)
    y = bn(x)
    (y * upstream).sum().backward()
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([r0["grad"], r1["grad"]]), x.grad, **close)
    for r in (r0, r1):
        torch.testing.assert_close(r["mean"], bn.running_mean, **close)
        torch.testing.assert_close(r["var"], bn.running_var, **close)
    torch.testing.assert_close(r0["weight_grad"] + r1["weight_grad"], bn.weight.grad, **close)


CONFIG = """
name: syncbn
data:
  dataset: synthetic
  size: [32, 48]
  train_options: {length: 16}
  test_options: {length: 4}
model: {encoder: tu-mobilenetv3_small_100, decoder_channels: 16, head_channels: 16, dropout: 0.1}
train: {epochs: 1, batch_size: 4, lr: 0.05, deterministic: true, progress: false, sync_bn: true}
teacher: {members: 1}
"""


def test_torchrun_two_gloo_processes_with_sync_bn_take_a_step(tmp_path):
    import subprocess

    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "ddp"
    env = child_env()
    cmd = torchrun_cmd(
        2, "train-teacher", "--config", cfg, "--member", "0", "--set", f"out_dir={out}", "--set", "device=cpu"
    )
    subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True)
    path = out / "members" / "member-0" / "model.safetensors"
    meta = read_metadata(path)
    assert meta["train"]["sync_bn"] is True and meta["ddp"]["world_size"] == 2
    assert meta["ddp"]["sync_bn"] is True  # the layers really were converted
    assert len(set(meta["ddp"]["rank_digests"])) == 1
    assert len(meta["history"]) == 1 and meta["history"][0]["loss"] > 0
    load_model(path)  # converted layers saved under the plain BatchNorm keys
