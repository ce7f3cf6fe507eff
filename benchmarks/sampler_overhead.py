"""Sampler overhead: time per step spent outside the network, surgdiff vs diffusers' DDIMScheduler.

Two measurements, each as a ratio diffusers / surgdiff in one process on the same tensors:

* step: `surgdiff.samplers.ddim_step` against `DDIMScheduler.step` on the same (x_t, model output),
  40 trailing steps of the linear-2000 schedule (η=0, and η=1 with the noise passed in);
* loop: a whole 40-step DDIM run with a trivial network (`0.1·x`): `surgdiff.samplers.sample`
  against diffusers' usual loop (`for t in timesteps: x = scheduler.step(net(x, t), t, x)`).

Timings are interleaved (one repetition of each contender in turn, so both see the same machine
load) and the median of `--reps` repetitions is reported, with the ratio of the best repetitions
beside it (on a shared machine the best repetition is the least disturbed one). diffusers is needed only here and in
the tests, never by the library.

    python benchmarks/sampler_overhead.py                  # 4x3x64x64 and 1x3x256x256, CPU
    python benchmarks/sampler_overhead.py --device cuda --shapes 16x3x256x256
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from surgdiff.diffusion import NoiseSchedule
from surgdiff.samplers import ddim_step, sample, step_levels


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def diffusers_scheduler(steps: int):
    from diffusers import DDIMScheduler
    sch = DDIMScheduler(num_train_timesteps=2000, beta_start=1e-6, beta_end=1e-2, beta_schedule="linear",
                        timestep_spacing="trailing", steps_offset=0, clip_sample=False, set_alpha_to_one=True)
    sch.set_timesteps(steps)
    return sch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["4x3x64x64", "1x3x256x256"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    schedule = NoiseSchedule.from_name("linear-2000")
    _, ab, ab_prev = step_levels(schedule, args.steps, "trailing")
    ab, ab_prev = ab.tolist(), ab_prev.tolist()
    sch = diffusers_scheduler(args.steps)
    assert sch.timesteps.tolist() == step_levels(schedule, args.steps, "trailing")[0].tolist()
    net = lambda x, level, label=None: 0.1 * x   # trivial network, the same for both

    print(f"# sampler overhead, {args.steps} DDIM steps (trailing, linear-2000), {args.dtype} on {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'shape':14} {'what':27} {'surgdiff us/step':>17} {'diffusers us/step':>18} {'ratio':>7} {'ratio of best':>14}")
    for shape_text in args.shapes:
        shape = parse_shape(shape_text)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g).to(device, dtype)
        out = torch.randn(shape, generator=g).to(device, dtype)
        noise = torch.randn(shape, generator=g).to(device, dtype)

        def ours_step(eta):
            def run():
                for i in range(args.steps):
                    ddim_step(x, out, ab[i], ab_prev[i], eta, noise if eta else None)
            return run

        def theirs_step(eta):
            def run():
                for t in sch.timesteps:
                    sch.step(out, t, x, eta=eta, variance_noise=noise if eta else None)
            return run

        def ours_loop():
            sample(net, None, "ddim", args.steps, schedule=schedule, x_T=x, progress=False)

        def theirs_loop():
            y = x
            with torch.no_grad():
                for t in sch.timesteps:
                    y = sch.step(net(y, t), t, y).prev_sample

        a_ = ddim_step(x, out, ab[0], ab_prev[0])[0]   # the two compute the same step
        b_ = sch.step(out, sch.timesteps[0], x).prev_sample
        assert torch.allclose(a_.float(), b_.float(), atol=1e-2 if dtype != torch.float32 else 1e-4), (a_ - b_).abs().max()

        cases = [("step, eta=0", ours_step(0.0), theirs_step(0.0)), ("step, eta=1 (noise given)", ours_step(1.0), theirs_step(1.0)),
                 ("40-step loop, trivial net", ours_loop, theirs_loop)]
        for what, ours, theirs in cases:
            for f in (ours, theirs):
                f()
                sync(device)   # warm-up
            times = {"ours": [], "theirs": []}
            for _ in range(args.reps):
                for key, f in (("ours", ours), ("theirs", theirs)):
                    t0 = time.perf_counter()
                    f()
                    sync(device)
                    times[key].append((time.perf_counter() - t0) / args.steps * 1e6)
            o, d = statistics.median(times["ours"]), statistics.median(times["theirs"])
            best = min(times["theirs"]) / min(times["ours"])
            print(f"{shape_text:14} {what:27} {o:17.1f} {d:18.1f} {d / o:7.2f} {best:14.2f}")


if __name__ == "__main__":
    main()
