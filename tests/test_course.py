"""The course as a whole: the hand-written README is safe from nbdev, and the notebooks are committed with outputs
that are current (see `tests/execute_notebooks.py --write`)."""
import configparser
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
