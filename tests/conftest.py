"""Shared test helpers: the micro U-Net the training tests use, the `slow` marker, and where the real CaDIS label maps
are (they live outside the project)."""
import os
from pathlib import Path

import pytest

REAL_LABELS_REL = Path("shared/reference/cadis_real_labels")

#: A U-Net small enough to train in seconds (a UNetConfig dict); `from conftest import MICRO` in a test module.
MICRO = dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=[], mid_attention=False,
             norm_groups=8, dropout=0.1, spade_hidden=16)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of CPU (golden runs, torchrun, the browser); "
                                       "`pytest -m 'not slow'` leaves them out while developing, CI runs them")


def find_real_labels() -> Path | None:
    "$SURGDIFF_REAL_LABELS, else the first shared/reference/cadis_real_labels in a folder above the repository."
    if os.environ.get("SURGDIFF_REAL_LABELS"):
        return Path(os.environ["SURGDIFF_REAL_LABELS"])
    here = Path(__file__).resolve().parent.parent
    return next((p / REAL_LABELS_REL for p in [here, *here.parents] if (p / REAL_LABELS_REL).is_dir()), None)


@pytest.fixture(scope="session")
def real_label_dir() -> Path:
    "The folder of the 15 real CaDIS label maps; tests that need them are skipped (with the reason) where it is absent."
    d = find_real_labels()
    if d is None:
        pytest.skip("real CaDIS label maps not found: set SURGDIFF_REAL_LABELS or keep the workspace's shared/ folder "
                    "above the repository (the checks against cadis.md's published numbers still run)")
    return d
