"""How long the explorers of nbs/07_explore.ipynb take to redraw after a control moves (no browser: the time
from setting a widget value to the new PNG bytes being in place, which is what the kernel adds to a drag).

The issue's target: updates that need no network call well under 100 ms; model calls show progress.

    python benchmarks/widget_latency.py [--repeats 20] [--threads 2]
"""
import argparse
import statistics
import time

import numpy as np
import torch

from surgdiff.model import load_pretrained
from surgdiff.widgets import denoising_explorer, label_editor, noising_explorer


def timed(fn, values):
    out = []
    for v in values:
        start = time.perf_counter()
        fn(v)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_pretrained("demo")
    rng = np.random.default_rng(0)
    ts = rng.integers(0, 2000, args.repeats).tolist()
    rows = []

    ex = noising_explorer(model=None, fallback=False)
    rows.append(("noising: move t (no model panel)", timed(lambda t: setattr(ex.t_slider, "value", t), ts), "no"))
    exm = noising_explorer(model=model, fallback=False)
    rows.append(("noising: move t (with the model's x̂0)", timed(lambda t: setattr(exm.t_slider, "value", t), ts), "1 call"))
    rows.append(("noising: switch schedule", timed(lambda s: setattr(ex.schedule_picker, "value", s),
                                                   ["cosine", "linear-1000", "linear-2000"] * 3), "no"))
    dex = denoising_explorer(model, steps=40, run=True, fallback=False)
    rows.append(("denoising: scrub the trajectory", timed(lambda i: setattr(dex.scrubber, "value", i),
                                                          rng.integers(0, 40, args.repeats).tolist()), "no"))
    start = time.perf_counter()
    dex.seed.value = 1
    dex.run()
    run_ms = (time.perf_counter() - start) * 1000
    rows.append(("denoising: Run, 40 DDIM steps with guidance", [run_ms], "40 calls"))
    ed = label_editor(model, steps=20, fallback=False)
    tool = ed.instrument.options[1][1]
    ed.instrument.value = tool
    rows.append(("label editor: move an instrument (label preview)",
                 timed(lambda d: setattr(ed.dx, "value", d), [int(v) for v in rng.integers(-20, 20, args.repeats)]), "no"))
    start = time.perf_counter()
    ed.generate()
    gen_ms = (time.perf_counter() - start) * 1000
    rows.append(("label editor: Generate, 2 × 20 steps", [gen_ms], "40 calls"))

    print(f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats}\n")
    print("| update | network | median ms | max ms |\n|---|---|---|---|")
    for name, ms, net in rows:
        print(f"| {name} | {net} | {statistics.median(ms):.0f} | {max(ms):.0f} |")


if __name__ == "__main__":
    main()
