"""The trainer: loss falls, exact resume after SIGKILL, corrupted checkpoints refused, NaN stops, 2-process DDP."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from surgdiff.io import CheckpointError, latest_checkpoint
from surgdiff.model import DiffusionConfig, DiffusionModel, export_model, load_pretrained
from surgdiff.fit import TrainingDiverged
from surgdiff.data import SyntheticScenes
from surgdiff.train import TrainConfig, TRAIN_PRESETS, train
from conftest import MICRO



def config(out, **kw) -> TrainConfig:
    base = dict(model=MICRO, image_size=(16, 16), synthetic_scenes=32, steps=12, batch_size=4, lr=1e-3, warmup_steps=2,
                log_every=1, sample_every=0, checkpoint_every=4, num_threads=1, bf16=False, out=str(out))
    return TrainConfig(**{**base, **kw})


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_few_steps_lower_the_loss(tmp_path):
    res = train(config(tmp_path / "r", steps=40, synthetic_scenes=16, warmup_steps=1, lr=2e-3, label_dropout=0.0),
                progress=False)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8


def test_same_seed_same_weights(tmp_path):
    a = train(config(tmp_path / "a", steps=5), progress=False)
    b = train(config(tmp_path / "b", steps=5), progress=False)
    c = train(config(tmp_path / "c", steps=5, seed=1), progress=False)
    assert same(weights(a.raw_model), weights(b.raw_model))
    assert not same(weights(a.raw_model), weights(c.raw_model))


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    full = train(config(tmp_path / "full", steps=24), progress=False)
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import json, time, surgdiff.fit as F
        from surgdiff.train import TrainConfig, train
        cfg = TrainConfig.from_dict(json.loads({json.dumps(config(out, steps=24).to_dict())!r}))
        orig = F.save_training_state
        def slow_save(*a, **k):  # give the test time to kill between checkpoints
            r = orig(*a, **k); time.sleep(0.6); return r
        F.save_training_state = slow_save  # what fit's Checkpoint callback calls
        train(cfg, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            latest = out / "latest.json"
            if latest.exists() and json.loads(latest.read_text())["step"] >= 8:
                break
            assert proc.poll() is None, "the training subprocess ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = json.loads((out / "latest.json").read_text())["step"]
    assert 8 <= killed_at < 24
    resumed = train(config(out, steps=24), resume=True, progress=False)
    assert resumed.step == 24
    assert same(weights(full.raw_model), weights(resumed.raw_model))
    assert same(weights(full.model), weights(resumed.model))  # EMA too


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    train(config(tmp_path / "r", steps=4), progress=False)
    with pytest.raises(CheckpointError, match="already has checkpoints"):
        train(config(tmp_path / "r", steps=8), progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garble", "delete"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, damage):
    train(config(tmp_path / "r", steps=4), progress=False)
    f = latest_checkpoint(tmp_path / "r") / "ema.safetensors"
    raw = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(raw[: len(raw) // 3])
    elif damage == "garble":
        f.write_bytes(b"\x00" * 16 + raw[16:])
    else:
        f.unlink()
    with pytest.raises(CheckpointError, match="ema.safetensors"):
        load_pretrained(tmp_path / "r")
    with pytest.raises(CheckpointError, match="ema.safetensors"):
        train(config(tmp_path / "r", steps=8), resume=True, progress=False)


def test_mismatched_config_is_a_clear_error(tmp_path):
    train(config(tmp_path / "r", steps=4), progress=False)
    model_dir = export_model(tmp_path / "r", tmp_path / "m")
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["unet"]["base_channels"] = 32
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the model/config"):
        load_pretrained(model_dir)
    cfg["kind"] = "something-else"
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not a 'surgdiff-diffusion'"):
        load_pretrained(model_dir)
    with pytest.raises(CheckpointError, match="no model called"):
        load_pretrained(tmp_path / "nothing")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import surgdiff.train as T
    train(config(tmp_path / "r", steps=4), progress=False)
    good = latest_checkpoint(tmp_path / "r")
    before = (good / "model.safetensors").read_bytes()
    real = T.diffusion_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(T, "diffusion_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 6.*step_00000004"):
        train(config(tmp_path / "r", steps=12, checkpoint_every=100), resume=True, progress=False)
    assert latest_checkpoint(tmp_path / "r") == good and (good / "model.safetensors").read_bytes() == before


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    out = tmp_path / "r"
    script = textwrap.dedent(f"""
        import json, sys, time, surgdiff.train as T
        cfg = T.TrainConfig.from_dict(json.loads({json.dumps(config(out, steps=10_000, checkpoint_every=10_000).to_dict())!r}))
        real = T.diffusion_loss
        calls = []
        def slow(*a, **k):
            calls.append(1)
            if len(calls) == 3: print("ready", flush=True)  # training is under way
            time.sleep(0.02); return real(*a, **k)
        T.diffusion_loss = slow
        r = T.train(cfg, progress=False)
        print("stopped", r.step, r.interrupted, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    _, step, interrupted = stdout.split()
    assert interrupted == "True" and 0 < int(step) < 10_000
    assert json.loads((out / "latest.json").read_text())["step"] == int(step)
    assert "Traceback" not in stderr and "saved a checkpoint" in stderr


def test_ddp_two_processes_gloo_identical_weights(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import json, os, torch, torch.distributed as dist
        from safetensors.torch import save_file
        from surgdiff.train import TrainConfig, train
        cfg = TrainConfig.from_dict(json.loads({json.dumps(config(tmp_path / "ddp", steps=6).to_dict())!r}))
        res = train(cfg, progress=False)
        sd = {{k: v.contiguous() for k, v in res.raw_model.state_dict().items()}}
        save_file(sd, os.path.join({str(tmp_path)!r}, f"rank{{dist.get_rank()}}.safetensors"))
        dist.destroy_process_group()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(worker)], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    from safetensors.torch import load_file
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert same(a, b)
    init = DiffusionModel(config(tmp_path / "x").model_config()).state_dict()
    assert not same(a, {k: v for k, v in init.items()})  # it trained
    assert json.loads((tmp_path / "ddp" / "latest.json").read_text())["step"] == 6


def test_synthetic_scenes_dataset():
    ds = SyntheticScenes(4, (16, 24), seed_offset=5)
    x, y = ds[1]
    assert x.shape == (3, 16, 24) and y.shape == (16, 24) and y.dtype == torch.long and -1 <= x.min() <= x.max() <= 1


def test_config_json_round_trip(tmp_path):
    cfg = config(tmp_path, cond="spade", grouping="exp1")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    mc = cfg.model_config()
    assert mc.unet["num_classes"] == 8 and mc.unet["cond"] == "spade"
    assert DiffusionConfig.from_dict(json.loads(json.dumps(mc.to_dict()))) == mc
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"stepz": 3})


def _attention_sides(unet, x_t, label=None) -> set:
    from surgdiff.layers import SelfAttention
    sides = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sides.append(tuple(inp[0].shape[-2:])))
             for m in unet.modules() if isinstance(m, SelfAttention)]
    unet(x_t, torch.full((len(x_t),), 0.5, device=x_t.device), label)
    for h in hooks:
        h.remove()
    return set(sides)


def test_attention_is_placed_by_the_smaller_side_at_rectangular_sizes():
    from surgdiff.unet import SR3UNet, UNetConfig
    cfg = TrainConfig(model={**MICRO, "channel_mults": [1, 1, 1, 1], "attn_resolutions": [16], "mid_attention": False},
                      image_size=(32, 64))
    unet = SR3UNet(UNetConfig.from_dict(cfg.model_config().unet))
    assert _attention_sides(unet, torch.zeros(1, 3, 32, 64)) == {(16, 32)}   # the larger side (64) would put it at 8x16
    # the thesis-scale preset at 272x480 (CaDIS halved): attention at 17x30 (and in the middle, which is also 17x30 there)
    sr3 = TrainConfig.from_dict(TRAIN_PRESETS["sr3"])
    unet_cfg = UNetConfig.from_dict(sr3.model_config().unet)
    assert unet_cfg.cond == "both" and unet_cfg.num_res_blocks == 3
    with torch.device("meta"):
        big = SR3UNet(unet_cfg)
        sides = _attention_sides(big, torch.zeros(1, 3, *sr3.image_size))
    assert sides == {(17, 30)}
