"""How long the main job takes, and where the time goes: `surgdiff sample` with its defaults (the demo cascade, 8
bundled maps written at 256×448) against the demo alone (`--size 64x112`), and the split of one cascade run by stage.

    python benchmarks/cascade_time.py [--runs 3] [--reps 3] [--peer DIR] [--no-split]

--peer DIR times the demo alone from another checkout too (e.g. `git worktree add /tmp/old REV`; its package is put
first on PYTHONPATH), interleaved with this one's: the ratio is what to compare across days and machines.

End to end: each command in a fresh process (import, model load, sampling, PNG writing), the two interleaved so both
see the same machine load; every wall time is printed, and the median. The split: one in-process run of the 8 maps
(batch 8, torch's threads) timing the base sampler and the stage separately, each with its weights in channels_last
(how `load_pretrained` loads every model) and in the default layout, interleaved; the same seed gives the same
pixels up to float rounding. The ratio of the two layouts is the number to compare across machines; seconds depend
on the CPU and its load.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from surgdiff.cascade import load_cascade, resize_labels
from surgdiff.cli import bundled_labels
from surgdiff.data import read_label
from surgdiff.samplers import sample

COMMANDS = {"cascade (default, 256×448)": [], "demo alone (--size 64x112)": ["--size", "64x112"]}


def end_to_end(runs: int, peer: str | None = None) -> dict[str, list[float]]:
    commands = {name: (extra, None) for name, extra in COMMANDS.items()}
    if peer:
        commands[f"demo alone, {peer}"] = (["--size", "64x112"], peer)
    times = {k: [] for k in commands}
    for _ in range(runs):
        for name, (extra, path) in commands.items():
            env = {**os.environ, "PYTHONPATH": path} if path else None
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import sys; from surgdiff.cli import main; sys.exit(main())",
                                "sample", "--out", f"{d}/o", "--quiet", *extra], check=True, capture_output=True, env=env)
                times[name].append(time.perf_counter() - t)
    return times


def split(reps: int) -> dict[str, list[float]]:
    cascade = load_cascade()
    labels = torch.from_numpy(np.stack([read_label(p) for p in bundled_labels()]).astype(np.int64))
    stage = cascade.stages[0]
    layouts = {"channels_last": torch.channels_last, "default layout": torch.contiguous_format}
    out = {f"{part}, {layout}": [] for part in ("base", "stage") for layout in layouts}
    for r in range(reps + 1):  # the first repetition warms up (one-time setup costs) and is not recorded
        for layout, fmt in layouts.items():
            cascade.base.to(memory_format=fmt)
            stage.to(memory_format=fmt)
            g = torch.Generator().manual_seed(0)
            with torch.inference_mode():
                t = time.perf_counter()
                x = sample(cascade.base, resize_labels(labels, cascade.base.image_size), generator=g, progress=False)
                base_s = time.perf_counter() - t
                t = time.perf_counter()
                cascade.lift(0, x, labels, g, progress=False)
                if r:
                    out[f"base, {layout}"].append(base_s)
                    out[f"stage, {layout}"].append(time.perf_counter() - t)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="end-to-end runs of each command (default: %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="in-process repetitions of the split (default: %(default)s)")
    p.add_argument("--peer", help="another checkout whose `surgdiff sample --size 64x112` is timed alongside")
    p.add_argument("--no-split", action="store_true", help="only the end-to-end table")
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\n| `surgdiff sample` (8 bundled maps) | wall seconds, each run | median |\n|---|---|---|")
    e2e = end_to_end(a.runs, a.peer)
    for name, ts in e2e.items():
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in ts)} | {statistics.median(ts):.1f} |")
    if a.peer:
        ratios = [o / n for o, n in zip(e2e[f"demo alone, {a.peer}"], e2e["demo alone (--size 64x112)"])]
        print(f"\ndemo alone: {a.peer} / this checkout = {', '.join(f'{r:.2f}' for r in ratios)}× (each interleaved run)")
    if a.no_split:
        return
    sp = split(a.reps)
    print("\n| part of one cascade run (8 maps, in process) | seconds, each repetition | median |\n|---|---|---|")
    for name, ts in sp.items():
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in ts)} | {statistics.median(ts):.2f} |")
    for part in ("base", "stage"):
        print(f"{part}: default layout / channels_last = "
              f"{statistics.median(sp[f'{part}, default layout']) / statistics.median(sp[f'{part}, channels_last']):.2f}×")


if __name__ == "__main__":
    main()
