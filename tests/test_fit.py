"""`surgdiff.fit`: the one training loop and its callbacks, on a task small enough to reason about."""
import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from surgdiff.fit import Callback, Checkpoint, Interrupt, LRSchedule, Recorder, Task, TrainingDiverged, fit
from surgdiff.io import latest_checkpoint, load_training_state


class Line(Task):
    def __init__(self, nan_at: int | None = None):
        torch.manual_seed(0)
        self.net, self.nan_at, self.calls = nn.Linear(1, 1), nan_at, 0
    def parts(self):
        return {"net": self.net}
    def make_optimizers(self):
        return {"optimizer": torch.optim.SGD(self.net.parameters(), lr=0.1)}
    def train_step(self, batch, opts, generator):
        self.calls += 1
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean()
        if self.nan_at is not None and self.calls > self.nan_at:
            return {"loss": loss * float("nan")}
        opts["optimizer"].zero_grad()
        loss.backward()
        opts["optimizer"].step()
        return {"loss": loss}


def batches(step):
    x = torch.randn(8, 1, generator=torch.Generator().manual_seed(step))
    return x, 2 * x + 1


class StopAfter(Callback):
    order = -5  # a stopping callback: runs before the step's other callbacks
    def __init__(self, n):
        self.n = n
    def before_step(self, state):
        state.stop = state.done >= self.n


class Boom(Callback):
    def after_fit(self, state):
        raise OSError("disk full")


def test_a_stopped_step_sets_no_learning_rate_and_is_saved(tmp_path):
    task = Line()
    opts = task.make_optimizers()
    st = fit(task, opts, batches, 20, seed=0, run=tmp_path, progress=False,
             callbacks=[StopAfter(5), LRSchedule({"optimizer": 1.0}, lambda s: 1 / (s + 1)), Checkpoint(every=100)])
    assert st.interrupted and st.done == 5
    assert opts["optimizer"].param_groups[0]["lr"] == 1 / 5  # step 4's rate, not step 5's (never taken)
    assert latest_checkpoint(tmp_path).name == "step_00000005"


def test_a_failing_after_fit_still_puts_the_ctrl_c_handler_back(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    task = Line()
    with pytest.raises(OSError, match="disk full"):
        fit(task, task.make_optimizers(), batches, 3, progress=False, callbacks=[Interrupt(), Boom()])
    assert signal.getsignal(signal.SIGINT) is before


def test_divergence_names_the_last_good_checkpoint_and_keeps_the_handler(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    task = Line(nan_at=7)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 7.*step_00000005"):
        fit(task, task.make_optimizers(), batches, 20, seed=0, run=tmp_path, progress=False,
            callbacks=[Interrupt(), Checkpoint(every=5)])
    assert latest_checkpoint(tmp_path).name == "step_00000005" and signal.getsignal(signal.SIGINT) is before
    with pytest.raises(TrainingDiverged, match="loss became nan at step 2; training stopped$"):
        fit(Line(nan_at=2), Line().make_optimizers(), batches, 5, progress=False)  # no run folder: no checkpoint named


def test_misconfigured_callbacks_fail_before_the_first_step():
    task = Line()
    with pytest.raises(ValueError, match="run folder"):
        fit(task, task.make_optimizers(), batches, 5, progress=False, callbacks=[Checkpoint(every=2)])
    with pytest.raises(ValueError, match=r"no base learning rate for optimizer\(s\) \['optimizer'\]"):
        fit(task, task.make_optimizers(), batches, 5, progress=False, callbacks=[LRSchedule({"opt": 1.0}, lambda s: 1.0)])
    assert task.calls == 0


def test_an_interrupt_callback_can_be_reused():
    stop, task = Interrupt(), Line()
    stop.requested = True  # as after a Ctrl-C in an earlier run
    st = fit(task, task.make_optimizers(), batches, 4, progress=False, callbacks=[stop, Recorder(1)])
    assert st.done == 4 and len(st.history) == 4


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    full = Line()
    full_opts = full.make_optimizers()
    fit(full, full_opts, batches, 12, seed=0, run=tmp_path / "a", progress=False, callbacks=[Checkpoint(every=4), Recorder(1)])
    part = Line()
    part_opts = part.make_optimizers()
    st = load_training_state(tmp_path / "a" / "checkpoints" / "step_00000008", part.parts(), part_opts)
    fit(part, part_opts, batches, 12, start=st["step"], history=st["history"], seed=0, progress=False)
    assert torch.equal(full.net.weight, part.net.weight) and torch.equal(full.net.bias, part.net.bias)


def test_dict_batches_are_counted():
    class DictLine(Line):
        def train_step(self, batch, opts, generator):
            return super().train_step((batch["x"], batch["y"]), opts, generator)
    task = DictLine()
    st = fit(task, task.make_optimizers(), lambda s: dict(zip("xy", batches(s))), 2, progress=False, callbacks=[Recorder(1)])
    assert st.seen == 16 and st.history[-1]["steps_per_s"] > 0


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_model(tmp_path):
    "DDP on the CPU (gloo): both ranks take every step, only rank 0 writes, and the run loads."
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os
        from pathlib import Path
        import torch
        from surgdiff.train import TrainConfig, train
        torch.set_num_threads(1)
        micro = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=[], mid_attention=False,
                     norm_groups=4, dropout=0.0, spade_hidden=8)
        res = train(TrainConfig(model=micro, image_size=(16, 16), synthetic_scenes=8, steps=3, batch_size=2, log_every=1,
                                sample_every=0, checkpoint_every=3, bf16=False, out={str(tmp_path / "run")!r}), progress=False)
        done = f"{{res.step}} {{float(sum(p.double().sum() for p in res.raw_model.parameters()))}}"
        Path({str(tmp_path)!r}, "rank" + os.environ["RANK"] + ".txt").write_text(done)  # stdout of two ranks interleaves
    """))
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    done = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert {d[0] for d in done} == {"3"}
    assert done[0][1] == done[1][1]  # DDP keeps the ranks' weights identical
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 3
