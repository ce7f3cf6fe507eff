"""The course as a whole: the hand-written README is safe from nbdev, and the notebooks are committed with outputs
that are current (see `tests/execute_notebooks.py --write`)."""
import configparser
import json
from pathlib import Path

ROOT = Path(__file__).parent.parent


def settings() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT / "settings.ini")
    return cp["DEFAULT"]


def test_nbdev_readme_cannot_overwrite_the_hand_written_readme():
    "nbdev_readme renders settings.ini's readme_nb over README.md: it must name no notebook."
    readme_nb = settings()["readme_nb"]
    assert readme_nb and not (ROOT / settings()["nbs_path"] / readme_nb).exists(), readme_nb


def notebooks() -> list[Path]:
    return sorted((ROOT / settings()["nbs_path"]).glob("*.ipynb"))


def _executor():
    import importlib.util
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "tests" / "execute_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebooks_are_committed_with_current_outputs():
    "Each notebook carries outputs made from its current cells and the current package (else: run the --write command)."
    ex = _executor()
    stale = []
    for path in notebooks():
        nb = json.loads(path.read_text())
        meta = nb["metadata"].get(ex.METADATA_KEY)
        if meta is None:
            stale.append(f"{path.name}: never executed with --write")
            continue
        if meta["cells_sha256"] != ex.cells_sha256(nb):
            stale.append(f"{path.name}: its cells changed since its outputs were made")
        if meta["package_sha256"] != ex.package_sha256(nb):
            stale.append(f"{path.name}: the package or the recorded tables it reads changed since")
    assert not stale, ("notebook outputs are stale; run `python tests/execute_notebooks.py --write` (all notebooks, "
                       "in order) and commit:\n" + "\n".join(stale))


def test_committed_notebooks_stay_small():
    sizes = {p.name: p.stat().st_size for p in notebooks()}
    assert sum(sizes.values()) <= 15 * 2**20, sorted(sizes.items(), key=lambda kv: -kv[1])[:5]


def test_every_explorer_is_followed_by_its_static_figure():
    "A reader without a kernel sees each explorer's picture: an image output right after every displayed explorer."
    nb = json.loads((ROOT / "nbs" / "07_explore.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        if "display(" in src and ("explorer" in src or "step_sweep" in src or "label_editor" in src):
            here_and_next = c["outputs"] + (cells[i + 1]["outputs"] if i + 1 < len(cells) else [])
            assert any("image/png" in o.get("data", {}) for o in here_and_next), src
