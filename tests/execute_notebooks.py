"""Execute every notebook top to bottom in a real Jupyter kernel with nbclient, as a learner's Run All does.

`nbdev_test` runs the notebooks in-process (execnb); this runs them the way JupyterLab does, in an ipykernel
subprocess, where ipywidgets render as widgets instead of falling back to static figures. Cells marked
`#| slow` are left out, as in `nbdev_test`; `--slow` keeps them. Prints the time of each notebook and the total,
and exits non-zero if any cell raised.

    python tests/execute_notebooks.py [--slow] [--timeout 600] [NOTEBOOK ...]
    python tests/execute_notebooks.py --write [NOTEBOOK ...]   # the committed outputs: slow cells included

`--write` is how the notebooks' committed outputs are made: every cell runs (slow ones too), the outputs and the
widgets' state are saved into the notebook, `nbdev_clean` tidies it, and the notebook's metadata records
`inputs_sha256()` — a hash of its cells and of everything its outputs depend on (the package, its assets, the
recorded benchmark tables it reads). `tests/test_course.py` recomputes the hash: outputs older than their inputs fail CI.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import hashlib
import re
import subprocess

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
METADATA_KEY = "surgdiff"  # settings.ini's allowed_metadata_keys keeps it through nbdev_clean


def cells_sha256(nb) -> str:
    "A hash of a notebook's cells as written: their types and sources, in order (outputs and ids excluded)."
    h = hashlib.sha256()
    for c in nb["cells"]:
        source = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        h.update(f"{c['cell_type']}\0{source}\0".encode())
    return h.hexdigest()


def reads_table(nb, path: Path) -> bool:
    """Does notebook `nb` name the folder of the recorded file `path` (as `"name"` or `/name/` in a cell)? Generous:
    a common folder name matches more notebooks than read it, which only makes outputs stale more often, never less."""
    text = "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in nb["cells"])
    name = re.escape(path.parent.name)
    return "benchmarks" in text and re.search(rf'["/]{name}["/]', text) is not None


def inputs_files(nb=None) -> list[Path]:
    """What a notebook's outputs depend on besides its cells: the package (code, assets), the figure style, and the
    recorded tables (`benchmarks/**/*.json`) it reads (all of them when `nb` is None)."""
    files = [p for p in (ROOT / "surgdiff").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [p for p in (ROOT / "benchmarks").rglob("*.json") if nb is None or reads_table(nb, p)]
    return sorted(files + [ROOT / "nbs" / "matplotlibrc"])


def package_sha256(nb=None) -> str:
    "A hash of `inputs_files(nb)`: their paths and contents."
    h = hashlib.sha256()
    for p in inputs_files(nb):
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def write_outputs(path: Path, timeout: int) -> float:
    "Execute every cell of one notebook and save it with its outputs, widget state and input hashes."
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata[METADATA_KEY] = {"cells_sha256": cells_sha256(nb), "package_sha256": package_sha256(nb),
                                 "seconds": round(seconds, 1), "command": "python tests/execute_notebooks.py --write"}
    nbformat.write(nb, path)
    subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(path)], check=True, cwd=ROOT)
    return seconds


def is_slow(cell) -> bool:
    return cell.cell_type == "code" and any(l.strip().startswith("#| slow") for l in cell.source.splitlines())


def execute(path: Path, slow: bool, timeout: int) -> float:
    "Run one notebook in a fresh python3 kernel started in nbs/; returns the wall time in seconds."
    nb = nbformat.read(path, as_version=4)
    if not slow:
        nb.cells = [c for c in nb.cells if not is_slow(c)]
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
    p.add_argument("--write", action="store_true", help="run every cell (slow ones too) and save the outputs into "
                   "the notebooks, with the hashes tests/test_course.py checks")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "nbs").glob("*.ipynb"))
    times, failed = {}, []
    total_start = time.perf_counter()
    for path in paths:
        try:
            times[path.name] = write_outputs(path, args.timeout) if args.write else execute(path, args.slow, args.timeout)
            print(f"{path.name:28s} {times[path.name]:7.1f} s", flush=True)
        except (CellExecutionError, CellTimeoutError) as err:  # a timed-out cell fails its notebook, not the run
            failed.append(path.name)
            print(f"{path.name:28s} FAILED\n{str(err)[-3000:]}", flush=True)
    total = time.perf_counter() - total_start
    print(f"{'total':28s} {total:7.1f} s for {len(paths)} notebooks ({'with' if args.slow or args.write else 'without'} slow cells)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": times, "total": total, "slow": args.slow, "failed": failed}, indent=2))
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
