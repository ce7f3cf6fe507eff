"""GAN baselines: losses fall, same seed same weights, exact resume (also after Ctrl-C), NaN stops, model folders, errors."""
import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from surgdiff.baselines import (BASELINES, BaselineConfig, BaselineGenerator, VGGLoss, baseline_config, export_baseline,
                                load_baseline, run_history, train_baseline)
from surgdiff.data import remap
from surgdiff.io import CheckpointError, latest_checkpoint, load_training_state, save_json, save_training_state
from surgdiff.fit import TrainingDiverged
from surgdiff.data import SyntheticScenes

torch.set_num_threads(1)

TINY = dict(image_size=(32, 32), synthetic_scenes=4, batch_size=4, steps=50, gen_channels=8, disc_channels=8,
            disc_layers=2, spade_hidden=16, z_dim=16, spade_ups=3, resnet_blocks=1, pool_size=4, lr=1e-3,
            decay_from=1.0, log_every=1, checkpoint_every=25, num_threads=1)
RECON = {"pix2pix": "l1", "spade": "l1", "cyclegan": "cycle"}


def config(name, out, **kw) -> BaselineConfig:
    extra = {"lr_d": 4e-3} if name == "spade" else {}
    return baseline_config(name, **{**TINY, **extra, "out": str(out), **kw})


@pytest.fixture(scope="module")
def scenes():
    return SyntheticScenes(4, (32, 32))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, scenes):
    "50 steps of each baseline on 4 tiny scenes (the whole data set in each batch)."
    root = tmp_path_factory.mktemp("runs")
    return {n: train_baseline(config(n, root / n, sample_every=50), progress=False, dataset=scenes) for n in BASELINES}


def checkpoint_tensors(run) -> dict:
    ck = latest_checkpoint(run)
    return {p.name: load_file(str(p)) for p in sorted(ck.glob("*.safetensors"))}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                        for x, y in zip(a.values(), b.values()))


@pytest.mark.parametrize("name", BASELINES)
def test_generator_reconstruction_loss_falls(runs, name):
    r = [h[RECON[name]] for h in run_history(runs[name])]
    assert len(r) == 50
    assert np.mean(r[-5:]) < 0.8 * np.mean(r[:5]), r


@pytest.mark.parametrize("name", BASELINES)
def test_run_folder_uses_the_shared_checkpoint_format(runs, name):
    run = runs[name]
    ck = latest_checkpoint(run)
    state = json.loads((ck / "state.json").read_text())
    parts = {"pix2pix": {"generator", "discriminator"}, "spade": {"generator", "discriminator"},
             "cyclegan": {"generator", "generator_ba", "discriminator_a", "discriminator_b", "pool_a", "pool_b"}}[name]
    assert {p.stem for p in ck.glob("*.safetensors")} == parts | {"optimizer_g", "optimizer_d"}
    assert state["step"] == 50 and {"optimizer_g", "optimizer_d"} <= set(state)
    assert BaselineConfig.load(run / "config.json").name == name
    assert (run / "loss.png").exists() and (run / "samples" / "step_00000050.png").exists()


@pytest.mark.parametrize("name", BASELINES)
def test_export_load_round_trip_reproduces_generate(runs, tmp_path, name):
    folder = export_baseline(runs[name], tmp_path / "model")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["kind"] == f"surgdiff-baseline-{name}" and (folder / "generator.safetensors").exists()
    labels = SyntheticScenes(3, (32, 32), seed_offset=500).labels
    a, b = load_baseline(runs[name]).generate(labels, seed=7), load_baseline(folder, name=name).generate(labels, seed=7)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32 and a.abs().max() <= 1
    assert torch.equal(a, b)
    assert torch.equal(a, load_baseline(folder).generate(labels, seed=7))  # same seed, same images
    if name == "spade":  # z is drawn from the seed
        assert not torch.equal(a, load_baseline(folder).generate(labels, seed=8))


@pytest.mark.parametrize("name", BASELINES)
def test_same_seed_same_weights_and_interrupted_run_resumes_exactly(tmp_path, scenes, name):
    kw = dict(steps=8, checkpoint_every=3, synthetic_scenes=4, decay_from=0.5)
    full = train_baseline(config(name, tmp_path / "full", **kw), progress=False, dataset=scenes)
    again = train_baseline(config(name, tmp_path / "again", **kw), progress=False, dataset=scenes)
    other = train_baseline(config(name, tmp_path / "other", seed=1, **kw), progress=False, dataset=scenes)
    assert same(checkpoint_tensors(full), checkpoint_tensors(again))
    assert not same(checkpoint_tensors(full), checkpoint_tensors(other))

    class CtrlCAtFifthStep(torch.utils.data.Dataset):  # a SIGINT arrives while step 4 or 5 loads its batch
        def __init__(self):
            self.calls = 0
        def __len__(self):
            return len(scenes)
        def __getitem__(self, i):
            self.calls += 1
            if self.calls == 4 * 4 * 2 + 1:
                os.kill(os.getpid(), signal.SIGINT)
            return scenes[i]
    cut = tmp_path / "cut"
    train_baseline(config(name, cut, **kw), progress=False, dataset=CtrlCAtFifthStep())
    assert json.loads((cut / "latest.json").read_text())["step"] in (4, 5)  # that step finished, then it stopped and saved
    train_baseline(config(name, cut, **kw), resume=True, progress=False, dataset=scenes)
    assert same(checkpoint_tensors(full), checkpoint_tensors(cut))
    assert run_history(cut) == [{**h, "images_per_s": h2["images_per_s"], "steps_per_s": h2["steps_per_s"]}
                                for h, h2 in zip(run_history(full), run_history(cut))]


def test_cyclegan_is_trained_unpaired_and_pix2pix_paired(tmp_path, scenes):
    class Recorder(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.ds, self.calls = ds, []
        def __len__(self):
            return len(self.ds)
        def __getitem__(self, i):
            self.calls.append(i)
            return self.ds[i]
    big = SyntheticScenes(16, (32, 32))
    for name, paired in (("pix2pix", True), ("cyclegan", False)):
        rec = Recorder(big)
        train_baseline(config(name, tmp_path / name, steps=3, synthetic_scenes=16), progress=False, dataset=rec)
        calls = rec.calls[1:]  # the first read checks the image size
        steps = [calls[k:k + 8] for k in range(0, 24, 8)]  # per step: 4 label reads, then 4 image reads
        assert len(calls) == 24
        assert all((s[:4] == s[4:]) == paired for s in steps)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, scenes):
    class NaNAfterStep3(torch.utils.data.Dataset):
        def __init__(self):
            self.calls = 0
        def __len__(self):
            return len(scenes)
        def __getitem__(self, i):
            self.calls += 1
            x, y = scenes[i]
            return (x * float("nan") if self.calls > 1 + 3 * 8 else x), y  # 1: the image-size check
    out = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match="last good checkpoint is .*step_00000003"):
        train_baseline(config("pix2pix", out, steps=10, checkpoint_every=3), progress=False, dataset=NaNAfterStep3())
    assert latest_checkpoint(out).name == "step_00000003"


def test_fresh_run_refuses_a_folder_with_checkpoints(runs, scenes):
    with pytest.raises(CheckpointError, match="already has checkpoints"):
        train_baseline(config("pix2pix", runs["pix2pix"]), progress=False, dataset=scenes)
    with pytest.raises(CheckpointError, match="not a 'spade'"):
        train_baseline(config("spade", runs["pix2pix"]), resume=True, progress=False, dataset=scenes)


@pytest.mark.parametrize("overrides, match", [
    (dict(name="stylegan"), "name must be one of"),
    (dict(batch_size=0), "batch_size"),
    (dict(gen_channels=2.5), "gen_channels"),
    (dict(lr=0), "lr must be positive"),
    (dict(betas=(0.5, 1.2)), "betas"),
    (dict(l1_weight=-1), "l1_weight"),
    (dict(dropout=1.0), "dropout"),
    (dict(image_size=(48, 64)), "unet_downs"),
    (dict(image_size=(32, 32), disc_layers=4), "too deep for image_size"),
    (dict(name="spade", spade_ups=7), "spade_ups"),
    (dict(name="spade", spade_input="noise"), "spade_input"),
    (dict(name="spade", spade_norm="layer"), "spade_norm"),
    (dict(name="spade", vgg_loss=True), "vgg_weights"),
    (dict(name="cyclegan", vgg_loss=True, vgg_weights="x.safetensors"), "SPADE option"),
    (dict(name="cyclegan", image_size=(30, 30)), "multiples of 4"),
])
def test_bad_config_values_are_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        BaselineConfig(**overrides)


def test_unknown_preset_and_field_are_errors():
    with pytest.raises(ValueError, match="preset must be one of"):
        baseline_config("pix2pix", "huge")
    with pytest.raises(ValueError, match="unknown BaselineConfig fields"):
        BaselineConfig.from_dict({"name": "spade", "ngf": 64})
    assert BaselineConfig.from_dict(json.loads(json.dumps(baseline_config("spade").to_dict()))) == baseline_config("spade")


def test_kind_mismatch_is_a_checkpoint_error(runs, tmp_path):
    folder = export_baseline(runs["spade"], tmp_path / "spade")
    with pytest.raises(CheckpointError, match="not a 'surgdiff-baseline-pix2pix'"):
        load_baseline(folder, name="pix2pix")
    cfg = json.loads((folder / "config.json").read_text())
    save_json(folder / "config.json", {**cfg, "kind": "surgdiff-diffusion"})
    with pytest.raises(CheckpointError, match="not a surgdiff baseline"):
        load_baseline(folder)
    save_json(folder / "config.json", {**cfg, "kind": "surgdiff-baseline-cyclegan"})
    with pytest.raises(CheckpointError, match="does not match name"):
        load_baseline(folder)
    with pytest.raises(CheckpointError, match="no baseline model or run folder"):
        load_baseline(tmp_path / "nothing")


def test_generate_remaps_labels_and_checks_them():
    g = BaselineGenerator(BaselineConfig(name="pix2pix", grouping="exp2", image_size=(32, 32), gen_channels=4)).eval()
    labels = SyntheticScenes(2, (32, 32)).labels
    with torch.no_grad():
        assert torch.equal(g.generate(labels), g(remap(labels, "exp2")))
    with pytest.raises(ValueError, match="trained at"):
        g.generate(torch.zeros(1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        g.generate(torch.zeros(1, 32, 32))


def test_pix2pix_test_dropout_is_seeded():
    g = BaselineGenerator(BaselineConfig(name="pix2pix", image_size=(64, 64), gen_channels=4, unet_downs=6, test_dropout=True))
    labels = SyntheticScenes(1, (64, 64)).labels
    a, b, c = g.generate(labels, seed=0), g.generate(labels, seed=0), g.generate(labels, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert g.training  # generate restored the mode


def test_vgg_loss_runs_from_a_local_weights_file(tmp_path, scenes):
    path = tmp_path / "vgg19.safetensors"
    torch.manual_seed(0)
    save_file({**{f"features.{k}": v for k, v in VGGLoss().features.state_dict().items()},
               "classifier.0.weight": torch.zeros(2, 2)}, str(path))  # extra torchvision keys are ignored
    vgg = VGGLoss(path)
    x = scenes[0][0][None]
    assert vgg(x, x) == 0 and vgg(-x, x) > 0
    small = SyntheticScenes(4, (16, 16))
    run = train_baseline(config("spade", tmp_path / "r", image_size=(16, 16), spade_ups=2, disc_layers=1, steps=2,
                                vgg_loss=True, vgg_weights=str(path)), progress=False, dataset=small)
    assert all(h["vgg"] > 0 for h in run_history(run))
    save_file({"features.0.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="not torchvision's vgg19"):
        VGGLoss(tmp_path / "bad.safetensors")


def test_save_training_state_checks_names(tmp_path):
    m = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="distinct"):
        save_training_state(tmp_path, 1, {"step": m}, {}, [])
    with pytest.raises(ValueError, match="distinct"):
        save_training_state(tmp_path, 1, {"a": m}, {"a": torch.optim.SGD(m.parameters(), lr=0.1)}, [])
    ck = save_training_state(tmp_path, 1, {"a": m}, {}, [])
    with pytest.raises(CheckpointError, match="no state for optimizer 'opt'"):
        load_training_state(ck, {"a": m}, {"opt": torch.optim.SGD(m.parameters(), lr=0.1)})


def test_data_of_another_size_is_refused(tmp_path, scenes):
    with pytest.raises(ValueError, match="image_size is \\(64, 64\\)"):
        train_baseline(config("pix2pix", tmp_path / "r", image_size=(64, 64)), progress=False, dataset=scenes)
