"""Careless and hostile input (issue #13): every hole gets one clean error naming the file or option, or the right
behaviour, and nothing is lost. Each test reproduces a hole that existed before it was closed."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgdiff.cli import main
from surgdiff.data import read_label, remap, synthetic_scene
from surgdiff.samplers import sample, sampling_settings
from surgdiff.model import load_pretrained
from conftest import MICRO


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(1)
    return load_pretrained("demo")


@pytest.fixture(scope="module")
def label():
    return synthetic_scene(7, (64, 112))[1]


@pytest.mark.parametrize("option", ["eta", "clip", "guidance"])
def test_nan_sampling_options_are_refused(option):
    with pytest.raises(ValueError, match=option):
        sampling_settings(None, **{option: float("nan")})


def test_eta_is_bounded():
    with pytest.raises(ValueError, match="eta must be between 0"):
        sampling_settings(None, eta=3.0)
    assert sampling_settings(None, clip=float("inf"))["clip"] is None  # inf and 0 still mean "no clipping"


@pytest.mark.parametrize("flags", [["--eta", "nan"], ["--clip", "nan"], ["--eta", "5"]])
def test_cli_refuses_nan_and_out_of_range_options(flags, tmp_path, capsys):
    assert main(["sample", "--sampler", "ddim", *flags, "--steps", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert flags[0][2:] in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_jpeg_label_maps_are_refused_by_content(label, tmp_path, capsys):
    buf = io.BytesIO()
    Image.fromarray(label).save(buf, format="JPEG", quality=95)
    (tmp_path / "labels").mkdir()
    fake_png = tmp_path / "labels" / "frame.png"  # JPEG bytes with a PNG name
    fake_png.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="JPEG.*PNG"):
        read_label(fake_png)
    assert main(["sample", "--labels", str(tmp_path / "labels"), "--steps", "2", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "frame.png" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("bad", [np.full((64, 112), 4.7), np.ones((64, 112), bool)])
def test_sample_refuses_float_and_bool_label_maps(demo, bad):
    with pytest.raises(ValueError, match="integer class ids"):
        sample(demo, torch.from_numpy(bad), steps=1, progress=False)


def test_remap_keeps_ignore_and_refuses_negative_ids():
    assert remap(torch.tensor([255, 8, 35]), "exp1").tolist() == [255, 7, 7]
    assert remap(np.array([255, 25]), "exp3").tolist() == [255, 255]
    with pytest.raises(ValueError, match=r"\[-1\]"):
        remap(torch.tensor([-1, 3]), "exp1")  # used to wrap around to the last entry (7)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without CUDA")
def test_cuda_device_without_cuda_is_one_clear_error(demo, label):
    with pytest.raises(ValueError, match="no CUDA device"):
        sample(demo, torch.from_numpy(label.astype(np.int64)), steps=1, device="cuda", progress=False)




def micro_run(out, **kw):
    from surgdiff.train import TrainConfig, train
    cfg = TrainConfig(**{**dict(model=MICRO, image_size=(16, 16), synthetic_scenes=8, steps=4, batch_size=2, lr=1e-3,
                                warmup_steps=1, log_every=1, sample_every=0, checkpoint_every=2, num_threads=1,
                                bf16=False, out=str(out)), **kw})
    return train(cfg, progress=False)


def flip_one_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # in the middle of the tensor data: the header still parses
    path.write_bytes(bytes(data))


def test_bit_flipped_weights_are_refused_by_their_sha256(tmp_path):
    from surgdiff.io import CheckpointError, latest_checkpoint, read_config
    from surgdiff.model import export_model
    micro_run(tmp_path / "run")
    folder = export_model(tmp_path / "run", tmp_path / "model")
    assert len(read_config(folder)["weights_sha256"]) == 64
    load_pretrained(folder)  # intact: loads
    flip_one_bit(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors does not match the SHA-256"):
        load_pretrained(folder)
    flip_one_bit(latest_checkpoint(tmp_path / "run") / "ema.safetensors")
    with pytest.raises(CheckpointError, match="ema.safetensors does not match the SHA-256"):
        load_pretrained(tmp_path / "run")


def test_nan_stop_calls_a_checkpoint_good_only_if_its_hashes_verify(tmp_path, monkeypatch):
    import surgdiff.train as T
    from surgdiff.io import latest_checkpoint
    from surgdiff.fit import TrainingDiverged
    real = T.diffusion_loss

    def poison(run, damage):
        calls = {"n": 0}
        def loss(*a, **k):
            calls["n"] += 1
            if calls["n"] < 4:
                return real(*a, **k)  # steps 0-2 fine; step_00000002 is written after step 1
            if damage:
                flip_one_bit(latest_checkpoint(run) / "model.safetensors")  # damaged on disk meanwhile
            return real(*a, **k) * float("nan")
        monkeypatch.setattr(T, "diffusion_loss", loss)

    poison(tmp_path / "ok", damage=False)
    with pytest.raises(TrainingDiverged, match=r"step_00000002 \(its SHA-256 verified\)"):
        micro_run(tmp_path / "ok", steps=6)
    poison(tmp_path / "bad", damage=True)
    with pytest.raises(TrainingDiverged, match="no checkpoint that passes its SHA-256 check"):
        micro_run(tmp_path / "bad", steps=6)


def write_label(path, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label).save(path)


def test_same_stem_in_two_subfolders_gives_two_outputs(label, tmp_path):
    write_label(tmp_path / "L" / "a" / "x.png", label)
    write_label(tmp_path / "L" / "b" / "x.png", label)
    assert main(["sample", "--labels", str(tmp_path / "L"), "--steps", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert sorted(str(p.relative_to(tmp_path / "o")) for p in (tmp_path / "o").rglob("*.png")) == \
        ["a/x.png", "a/x_label.png", "b/x.png", "b/x_label.png", "contact_sheet.png"]


@pytest.mark.parametrize("names", [["foo.png", "foo_label.png"], ["contact_sheet.png"]])
def test_output_name_clashes_are_refused_before_anything_is_written(names, label, tmp_path, capsys):
    for n in names:
        write_label(tmp_path / "L" / n, label)
    assert main(["sample", "--labels", str(tmp_path / "L"), "--steps", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "written twice" in err and names[-1] in err and not (tmp_path / "o").exists()


def test_make_dataset_refuses_frames_that_map_to_the_same_output(label, tmp_path, capsys):
    for n in ["Video1_frame000000.png", "Video1_frame000005.png"]:
        write_label(tmp_path / "L" / n, label)
    assert main(["make-dataset", "--labels", str(tmp_path / "L"), "--steps", "2", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Video1_frame000005.png" in err and not (tmp_path / "o").exists()


def test_make_dataset_count_is_the_files_on_disk(label, tmp_path, capsys):
    for n in ["Video1_frame000000.png", "Video1_frame000010.png"]:
        write_label(tmp_path / "L" / n, label)
    assert main(["make-dataset", "--labels", str(tmp_path / "L"), "--per-label", "2", "--steps", "2",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "wrote 4 generated pairs" in capsys.readouterr().out
    assert len(list((tmp_path / "o").glob("*/Images/*.png"))) == 4 == len(list((tmp_path / "o").glob("*/Labels/*.png")))


@pytest.mark.parametrize("argv, words", [
    (["synth", "{out}", "--size", "100000x100000", "--frames", "1"], "GiB"),
    (["synth", "{out}", "--frames", "0"], "--frames must be at least 1"),
    (["make-dataset", "--out", "{out}", "--per-label", "100000000"], "GiB"),
])
def test_huge_or_empty_jobs_are_one_line_errors(argv, words, tmp_path, capsys):
    assert main([a.format(out=tmp_path / "o") for a in argv] + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_refused_resume_leaves_the_run_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    micro_run(run)
    before = {p: p.read_bytes() for p in [run / "config.json", run / "model" / "config.json"]}
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text((run / "config.json").read_text())
    for flags, field in [(["--cond", "spade"], "cond"), (["--batch-size", "4"], "batch_size"), (["--seed", "3"], "seed")]:
        assert main(["train", "--config", str(cfg_file), "--out", str(run), "--resume", *flags, "--quiet"]) == 2
        assert field in capsys.readouterr().err
        assert all(p.read_bytes() == b for p, b in before.items())  # nothing rewritten
    assert main(["sample", "--model", str(run), "--steps", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 0


def test_safe_changes_on_resume_are_recorded_beside_the_original_config(tmp_path):
    import json
    run = tmp_path / "run"
    micro_run(run)
    original = (run / "config.json").read_bytes()
    from surgdiff.train import TrainConfig, train
    cfg = TrainConfig.load(run / "config.json")
    train(TrainConfig.from_dict({**cfg.to_dict(), "steps": 6, "log_every": 2}), resume=True, progress=False)
    assert (run / "config.json").read_bytes() == original
    assert json.loads((run / "resumes.json").read_text()) == [
        {"step": 4, "changes": {"log_every": [1, 2], "steps": [4, 6]}}]


def test_a_failed_train_leaves_no_run_folder(tmp_path):
    from surgdiff.train import TrainConfig, train
    (tmp_path / "empty_cadis").mkdir()
    cfg = TrainConfig(model=MICRO, data=str(tmp_path / "empty_cadis"), image_size=(16, 16), steps=2, batch_size=2,
                      out=str(tmp_path / "run"), num_threads=1)
    with pytest.raises(FileNotFoundError):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", ["{}", "[]", '{"checkpoint": 7}'])
def test_damaged_latest_json_is_one_clear_error(tmp_path, text):
    from surgdiff.io import CheckpointError
    micro_run(tmp_path / "run")
    (tmp_path / "run" / "latest.json").write_text(text)
    with pytest.raises(CheckpointError, match="latest.json does not name a checkpoint"):
        load_pretrained(tmp_path / "run")


def test_model_config_that_is_not_an_object_is_one_clear_error(tmp_path):
    from surgdiff.io import CheckpointError
    from surgdiff.model import export_model
    micro_run(tmp_path / "run")
    folder = export_model(tmp_path / "run", tmp_path / "m")
    (folder / "config.json").write_text("[]")
    with pytest.raises(CheckpointError, match="must hold a JSON object"):
        load_pretrained(folder)


def test_train_config_with_a_string_for_a_number_names_the_field(tmp_path, capsys):
    import json
    (tmp_path / "cfg.json").write_text(json.dumps({"steps": "ten"}))
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "steps must be an integer" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_sample_batch_size_zero_and_read_only_out(tmp_path, capsys, monkeypatch):
    import surgdiff.cli as cli
    assert main(["sample", "--batch-size", "0", "--steps", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    real_access = cli.os.access  # as root every folder is writable, so say what a normal user would be told
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    assert main(["sample", "--steps", "1", "--out", str(ro), "--quiet"]) == 2
    assert "not writable" in capsys.readouterr().err and ro.stat().st_mode & 0o777 == 0o555 and ro.is_dir()


def test_stretching_resize_is_said(tmp_path, capsys, label):
    write_label(tmp_path / "L" / "square.png", np.asarray(Image.fromarray(label).resize((64, 64), Image.NEAREST)))
    assert main(["sample", "--labels", str(tmp_path / "L"), "--steps", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "stretched" in capsys.readouterr().out


def test_killed_partial_outputs_are_cleaned_up_by_the_next_run(tmp_path):
    from surgdiff.io import PARTIAL_LOCK, atomic_dir
    dead = tmp_path / ".out.partial-999999999-abc"   # its writer was killed: the lock file is there, nobody holds it
    dead.mkdir()
    (dead / PARTIAL_LOCK).touch()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("x")
    assert not dead.exists() and (tmp_path / "out" / "a").exists() and not (tmp_path / "out" / PARTIAL_LOCK).exists()
    assert (tmp_path / "out").stat().st_mode & 0o777 != 0o700  # the usual permissions, not mkdtemp's 0700


def interrupt_cli(args: list[str], run, sig: str = "SIGINT") -> tuple[int, str, str]:
    "Run `surgdiff ARGS` in a fresh process, send `sig` once it is training (its run folder exists), return rc, out, err."
    import signal, subprocess, sys, time
    proc = subprocess.Popen([sys.executable, "-m", "surgdiff.cli", *args, "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # the run folder is written just before the first step
        if (run / "config.json").exists():
            break
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])  # SIGTERM: docker stop, a SLURM preemption
def test_ctrl_c_in_cli_training_exits_130_after_saving(tmp_path, sig):
    import json
    from surgdiff.train import TrainConfig
    run = tmp_path / "run"
    cfg = TrainConfig(model=MICRO, image_size=(16, 16), synthetic_scenes=8, steps=100_000, batch_size=2,
                      log_every=1000, sample_every=0, checkpoint_every=100_000, num_threads=1, bf16=False, out=str(run))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    rc, out, err = interrupt_cli(["train", "--config", str(tmp_path / "cfg.json")], run, sig)
    assert rc == 130, err
    assert "interrupted at step" in out and (run / "latest.json").exists()


def test_training_puts_torch_threads_back(tmp_path):
    from surgdiff.baselines import baseline_config, train_baseline
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    micro_run(tmp_path / "r", num_threads=other)
    assert torch.get_num_threads() == before
    train_baseline(baseline_config("pix2pix", image_size=(32, 32), synthetic_scenes=4, batch_size=2, steps=1,
                                   gen_channels=8, disc_channels=8, disc_layers=2, num_threads=other,
                                   out=str(tmp_path / "b")), progress=False)
    assert torch.get_num_threads() == before


def test_ctrl_c_in_cli_baseline_training_exits_130(tmp_path):
    import json
    from surgdiff.baselines import baseline_config
    run = tmp_path / "run"
    cfg = baseline_config("pix2pix", image_size=(32, 32), synthetic_scenes=4, batch_size=2, steps=100_000,
                          gen_channels=8, disc_channels=8, disc_layers=2, checkpoint_every=100_000, num_threads=1,
                          out=str(run))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    rc, out, err = interrupt_cli(["train-baseline", "pix2pix", "--config", str(tmp_path / "cfg.json")], run)
    assert rc == 130, err
    assert "interrupted at step" in out and "--resume" in out and (run / "latest.json").exists()


@pytest.mark.parametrize("option", ["eta", "guidance", "clip"])
def test_explorers_refuse_nan_options(demo, option):
    from surgdiff.widgets import denoising_explorer
    with pytest.raises(ValueError, match=option):
        denoising_explorer(demo, sampler="ddim", **{option: float("nan")}, fallback=False)


# --- issue #22: shared folders, several writers, untrusted run folders ----------------------------------------------

def test_a_live_writers_partial_folder_is_never_removed(tmp_path):
    "The writer may live in another container or host (its PID invisible here): its held lock, not its PID, protects it."
    import fcntl
    from surgdiff.io import PARTIAL_LOCK, atomic_dir
    live = tmp_path / ".out.partial-999999999-live"
    live.mkdir()
    holder = open(live / PARTIAL_LOCK, "wb")
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: another writer
    legacy = tmp_path / ".old.partial-999999998-x"
    legacy.mkdir()  # from a version without locks: kept, to be safe
    try:
        with atomic_dir(tmp_path / "other") as tmp:
            (tmp / "a").write_text("x")
        assert live.exists() and legacy.exists()
    finally:
        holder.close()


def test_two_writers_on_one_output_folder(label, tmp_path, capsys):
    from surgdiff.io import folder_lock
    write_label(tmp_path / "labels" / "a.png", label)
    out = tmp_path / "out"
    with folder_lock(out):  # another job is writing there
        assert main(["sample", "--labels", str(tmp_path / "labels"), "--size", "64x112", "--steps", "2",
                     "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "being written by pid" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["sample", "--labels", str(tmp_path / "labels"), "--size", "64x112", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0  # released: the next one goes ahead


def test_two_trainers_on_one_run_folder(tmp_path):
    from surgdiff.io import FolderInUse, folder_lock
    with folder_lock(tmp_path / "run"):
        with pytest.raises(FolderInUse, match="being written by pid"):
            micro_run(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_checkpoint_every_zero_is_refused():
    from surgdiff.train import TrainConfig
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        TrainConfig(checkpoint_every=0)


def test_resume_of_a_folder_that_is_not_a_run_is_refused(tmp_path):
    from surgdiff.io import CheckpointError
    with pytest.raises(CheckpointError, match="not a run folder"):
        _resume(tmp_path / "mistyped")
    assert not (tmp_path / "mistyped").exists()


def _resume(out):
    from surgdiff.train import TrainConfig, train
    return train(TrainConfig(model=MICRO, image_size=(16, 16), synthetic_scenes=8, steps=2, batch_size=2,
                             sample_every=0, num_threads=1, bf16=False, out=str(out)), resume=True, progress=False)


def test_latest_json_cannot_point_outside_its_run(tmp_path):
    import json
    from surgdiff.io import CheckpointError
    run = tmp_path / "run"
    micro_run(run)
    (tmp_path / "outside_ck").mkdir()
    (run / "latest.json").write_text(json.dumps({"checkpoint": "step_00000004/../../../outside_ck", "step": 4}))
    with pytest.raises(CheckpointError, match="does not name a checkpoint folder"):
        load_pretrained(run)


def test_checkpoints_are_pruned_by_step_number_not_by_name(tmp_path):
    from surgdiff.io import save_training_state
    net = torch.nn.Linear(2, 2)
    for step in (99_999_999, 100_000_000):  # as text, "step_100000000" sorts before "step_99999999"
        save_training_state(tmp_path, step, {"net": net}, {}, [], keep=1)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_100000000"]


def test_weights_are_readable_like_their_config(tmp_path):
    run = tmp_path / "run"
    micro_run(run)
    ck = sorted((run / "checkpoints").iterdir())[-1]
    assert (ck / "ema.safetensors").stat().st_mode & 0o777 == (ck / "state.json").stat().st_mode & 0o777


@pytest.mark.parametrize("unet, words", [
    (dict(num_res_blocks=100_000), "num_res_blocks must be an integer in 1..64"),
    (dict(base_channels=32768, norm_groups=8), "base_channels must be an integer in 1..4096"),
    (dict(base_channels=2048, channel_mults=(1, 2, 4, 8), norm_groups=8), "billion parameters"),
])
def test_a_model_config_is_bounded_before_anything_is_built(tmp_path, unet, words):
    import json
    from surgdiff.io import CheckpointError
    from surgdiff.model import DiffusionConfig
    cfg = DiffusionConfig(unet={**MICRO, "image_channels": 0}).to_dict()
    cfg["unet"].update(unet)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises((ValueError, CheckpointError), match=words):
        load_pretrained(tmp_path)


def test_an_absurd_image_size_is_refused():
    from surgdiff.model import DiffusionConfig
    with pytest.raises(ValueError, match="image_size must be"):
        DiffusionConfig(image_size=(100_000_000, 100_000_000))


def test_16_bit_labels_and_images_are_read_right_or_refused_by_name(tmp_path):
    from surgdiff.data import read_image
    ids = synthetic_scene(3, (32, 32))[1].astype(np.uint16)
    rgb16 = tmp_path / "rgb16.png"  # 16-bit RGB: PIL reads it at 8 bits (its high bytes), so ids < 256 would become 0
    import zlib, struct
    def png(path, arr, colour_type):
        raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr.reshape(arr.shape[0], -1))
        chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
        ihdr = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 16, colour_type, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    png(rgb16, np.repeat(ids[..., None], 3, 2), 2)  # the ids themselves, stored in 16 bits
    with pytest.raises(ValueError, match="rgb16.png is a 16-bit"):
        read_label(rgb16)
    grey16 = tmp_path / "grey16.png"
    png(grey16, (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16), 0)
    img = read_image(grey16)
    assert img.shape == (32, 32, 3) and img.min() == 0 and 200 < img.max() < 256 and len(np.unique(img)) > 100  # not white


def test_a_fifo_or_a_truncated_frame_is_named_before_training_starts(tmp_path):
    import os
    from surgdiff.data import read_image, write_synthetic_cadis
    from surgdiff.train import TrainConfig, train
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        read_image(fifo)  # would block forever
    with pytest.raises(ValueError, match="not a regular file"):
        read_label(fifo)
    root = write_synthetic_cadis(tmp_path / "cadis", videos=(1,), frames_per_video=3, size=(32, 32))
    frame = sorted(root.glob("Video01/Images/*.png"))[-1]
    frame.write_bytes(frame.read_bytes()[:40])  # truncated
    cfg = TrainConfig(model=MICRO, data=str(root), videos=[1], image_size=(16, 16), steps=2, batch_size=1,
                      sample_every=0, num_threads=1, bf16=False, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=frame.name):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option, words", [(dict(clip=-1.0), "clip must be positive"),
                                           (dict(guidance=1e39), "guidance must be between 0")])
def test_negative_clip_and_huge_guidance_are_refused(option, words):
    with pytest.raises(ValueError, match=words):
        sampling_settings(None, **option)


def test_an_unwritable_output_is_one_line_naming_the_path(label, tmp_path, capsys):
    write_label(tmp_path / "labels" / "a.png", label)
    (tmp_path / "file").write_text("a regular file where a folder would go")
    assert main(["sample", "--labels", str(tmp_path / "labels"), "--size", "64x112", "--steps", "2",
                 "--out", str(tmp_path / "file" / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("surgdiff sample: error: [Errno") and str(tmp_path / "file") in err


def test_upper_case_png_labels_are_found(label, tmp_path):
    write_label(tmp_path / "labels" / "A.PNG", label)
    assert main(["sample", "--labels", str(tmp_path / "labels"), "--size", "64x112", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "A.png").exists()


@pytest.mark.parametrize("bad", [np.full((64, 112), 4.7), np.ones((64, 112), bool), np.full((64, 112), -1)])
def test_explorers_check_label_maps_like_sample(demo, bad):
    from surgdiff.widgets import denoising_explorer
    with pytest.raises(ValueError, match="integer class ids|outside the CaDIS ids"):
        denoising_explorer(demo, label=bad, stage=None, fallback=False)


@pytest.mark.parametrize("option, value", [("steps", 5000), ("seed", -5)])
def test_explorers_refuse_options_their_controls_cannot_show(demo, option, value):
    from surgdiff.widgets import denoising_explorer
    with pytest.raises(ValueError, match=f"{option} must be"):
        denoising_explorer(demo, stage=None, fallback=False, **{option: value})


def test_explorers_show_a_guidance_above_the_usual_range_instead_of_clamping_it(demo):
    from surgdiff.widgets import denoising_explorer
    ex = denoising_explorer(demo, stage=None, fallback=False, guidance=10.0)  # it used to become 5 silently
    assert ex.guidance.value == 10.0


def test_synth_reports_the_frames_it_wrote(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--videos", "1", "1", "--frames", "2", "--size", "32x32", "--quiet"]) == 0
    assert "wrote 2 synthetic frames" in capsys.readouterr().out
    assert len(list((tmp_path / "s").glob("Video*/Images/*.png"))) == 2


def test_sample_streams_each_batch_to_disk_before_the_next(label, tmp_path, monkeypatch):
    "10,000 labels used to be held in memory at once (1.8 GB, nothing written for 10 minutes)."
    import surgdiff.cli as cli
    for k in range(5):
        write_label(tmp_path / "labels" / f"l{k}.png", label)
    seen, real = [], cli.generate
    def spy(model, labels, args, seed, rng=None):
        seen.append((len(labels), len(list(tmp_path.glob(".out.partial-*/l*_label.png")))))
        return real(model, labels, args, seed, rng)
    monkeypatch.setattr(cli, "generate", spy)
    assert main(["sample", "--labels", str(tmp_path / "labels"), "--size", "64x112", "--steps", "2", "--batch-size", "2",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert seen == [(2, 0), (2, 2), (1, 4)]  # batch k sees the 2k maps before it already written


def test_a_run_folder_removed_during_training_stops_it(tmp_path):
    import shutil
    from surgdiff.io import CheckpointError
    from surgdiff.train import TrainConfig, train
    run = tmp_path / "run"
    scenes = [(torch.zeros(3, 16, 16), torch.zeros(16, 16, dtype=torch.long))] * 4

    class RemovesTheRun(torch.utils.data.Dataset):  # someone deletes the folder while step 3 loads its batch
        calls = 0
        def __len__(self):
            return len(scenes)
        def __getitem__(self, i):
            RemovesTheRun.calls += 1
            if RemovesTheRun.calls == 2 * 2 + 1:
                shutil.rmtree(run)
            return scenes[i]
    cfg = TrainConfig(model=MICRO, image_size=(16, 16), steps=6, batch_size=2, sample_every=0, checkpoint_every=2,
                      num_threads=1, bf16=False, out=str(run))
    with pytest.raises(CheckpointError, match="was removed during training"):
        train(cfg, progress=False, dataset=RemovesTheRun())
    assert not run.exists()


def test_a_decompression_bomb_is_one_error_naming_the_file(tmp_path):
    import struct, zlib
    from surgdiff.data import read_image
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    bomb = tmp_path / "bomb.png"  # its header claims 20000 x 10000 = 200 Mpx (over PIL's 179 Mpx limit)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    for reader in (read_label, read_image):
        with pytest.raises(ValueError, match="bomb.png"):
            reader(bomb)


def test_a_filesystem_without_flock_warns_and_still_writes(tmp_path, monkeypatch):
    "ENOSYS/ENOLCK (some FUSE mounts, Lustre noflock) must not read as 'another writer holds it'."
    import errno, fcntl
    from surgdiff.io import atomic_dir, folder_lock
    def no_flock(f, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.warns(UserWarning, match="no flock"):
        with folder_lock(tmp_path / "out"), atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a").write_text("x")
    assert (tmp_path / "out" / "a").read_text() == "x"
