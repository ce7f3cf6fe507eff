"""The synthetic world against real CaDIS label maps: layout statistics side by side.

    python benchmarks/layout_vs_real.py [--real ../shared/reference/cadis_real_labels] [--n 200] [--size 64 112]

Prints a Markdown table of `surgdiff.data.layout_statistics` for the real maps (any size, read as they are) and for
`--n` synthetic scenes (seeds 0 … n-1) at `--size`, and `compare_layouts` of the two.
"""
import argparse
from pathlib import Path

from surgdiff.data import CLASS_NAMES, compare_layouts, layout_statistics, read_label, synthetic_scene


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=Path("../shared/reference/cadis_real_labels"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--size", type=int, nargs=2, default=[64, 112], metavar=("H", "W"))
    a = p.parse_args()
    R = layout_statistics([read_label(f) for f in sorted(a.real.glob("*.png"))])
    S = layout_statistics([synthetic_scene(s, tuple(a.size))[1] for s in range(a.n)])
    print(f"| quantity | real ({R['n']} maps) | synthetic ({S['n']} scenes, {a.size[0]}×{a.size[1]}) |\n|---|---|---|")
    for k in ("pupil_cx", "pupil_cy", "pupil_radius", "iris_radius", "iris_at_border", "instruments"):
        print(f"| {k.replace('_', ' ')} | {R[k]:.3f} | {S[k]:.3f} |")
    for side in ("lower", "top", "left", "right"):
        print(f"| instrument at {side} border | {R['instrument_border'][side]:.2f} | {S['instrument_border'][side]:.2f} |")
    for c in sorted(range(36), key=lambda c: -R["class_fraction"][c])[:10]:
        print(f"| fraction / presence {CLASS_NAMES[c]} | {R['class_fraction'][c]:.3f} / {R['class_presence'][c]:.2f} | "
              f"{S['class_fraction'][c]:.3f} / {S['class_presence'][c]:.2f} |")
    print("\n" + ", ".join(f"{k} {v:+.3f}" for k, v in compare_layouts(S, R).items()))


if __name__ == "__main__":
    main()
