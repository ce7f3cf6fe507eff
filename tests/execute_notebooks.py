"""Execute every notebook top to bottom in a real Jupyter kernel with nbclient, as a learner's Run All does.

`nbdev_test` runs the notebooks in-process (execnb); this runs them the way JupyterLab does, in an ipykernel
subprocess, where ipywidgets render as widgets instead of falling back to static figures. Cells marked
`#| slow` are left out, as in `nbdev_test`; `--slow` keeps them. Prints the time of each notebook and the total,
and exits non-zero if any cell raised.

    python tests/execute_notebooks.py [--slow] [--timeout 600] [NOTEBOOK ...]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def is_slow(cell) -> bool:
    return cell.cell_type == "code" and any(l.strip().startswith("#| slow") for l in cell.source.splitlines())


def execute(path: Path, slow: bool, timeout: int) -> float:
    "Run one notebook in a fresh python3 kernel started in nbs/; returns the wall time in seconds."
    nb = nbformat.read(path, as_version=4)
    if not slow: nb.cells = [c for c in nb.cells if not is_slow(c)]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every nbs/*.ipynb")
    p.add_argument("--slow", action="store_true", help="also run '#| slow' cells")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the times to this JSON file")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "nbs").glob("*.ipynb"))
    times, failed = {}, []
    total_start = time.perf_counter()
    for path in paths:
        try:
            times[path.name] = execute(path, args.slow, args.timeout)
            print(f"{path.name:28s} {times[path.name]:7.1f} s", flush=True)
        except CellExecutionError as err:
            failed.append(path.name)
            print(f"{path.name:28s} FAILED\n{str(err)[-3000:]}", flush=True)
    total = time.perf_counter() - total_start
    print(f"{'total':28s} {total:7.1f} s for {len(paths)} notebooks ({'with' if args.slow else 'without'} slow cells)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": times, "total": total, "slow": args.slow, "failed": failed}, indent=2))
    if failed: print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
