"""The explorer notebook in a real browser: JupyterLab on 127.0.0.1 with a token, Debian's Chromium driven by
Playwright for Python (never `playwright install`: the browser is the system's `/usr/bin/chromium`).

Run All on nbs/07_explore.ipynb (its `#| slow` cells removed, as `nbdev_test` does), move the noising explorer's
timestep slider with the keyboard, and check that the x_t picture changed. A screenshot is written to
`$SURGDIFF_TEST_OUTPUT/browser/` (default `tests/output/browser/`)."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SURGDIFF_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# The machine has no internet: without these, Chromium keeps trying (and failing) to reach Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--metrics-recording-only"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_slow_cells(src: Path, dst: Path) -> int:
    "Copy a notebook, dropping `#| slow` code cells; returns how many code cells remain."
    nb = json.loads(src.read_text())
    nb["cells"] = [c for c in nb["cells"] if not (c["cell_type"] == "code" and
                   any(line.strip().startswith("#| slow") for line in "".join(c["source"]).splitlines()))]
    dst.write_text(json.dumps(nb))
    return sum(c["cell_type"] == "code" for c in nb["cells"])


@pytest.fixture()
def output_dir() -> Path:
    out = Path(os.environ.get("SURGDIFF_TEST_OUTPUT", ROOT / "tests" / "output")) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture()
def jupyterlab(tmp_path):
    "A JupyterLab server on 127.0.0.1 with a random token, serving a copy of the explorer notebook."
    work = tmp_path / "lab"
    work.mkdir()
    n_code = without_slow_cells(ROOT / "nbs" / "07_explore.ipynb", work / "07_explore.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    # Render every cell (JupyterLab 4 only renders the cells in view by default, so prompts below would be empty).
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    settings = tmp_path / "settings"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), "JUPYTERLAB_SETTINGS_DIR": str(settings), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"JupyterLab did not start; log:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield dict(url=f"http://127.0.0.1:{port}/lab/tree/07_explore.ipynb?token={token}", n_code=n_code,
                   log=tmp_path / "jupyterlab.log")
    finally:   # stop the server we started, by its PID (and its kernels, in its process group)
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow
def test_explorer_runs_in_jupyterlab_and_the_slider_moves_the_picture(jupyterlab, output_dir):
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), f"Debian's chromium is needed at {CHROMIUM} (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(jupyterlab["url"], timeout=90_000)
            # Wait for the kernel status text to read Idle before Run All, or the click is lost. (The toolbar's
            # execution indicator says idle already while the status bar still reads "No Kernel | Initializing".)
            idle = page.locator(".jp-StatusBar-Widget", has_text="(ipykernel) | Idle")
            idle.wait_for(timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            # Done when every code cell has an execution count and the kernel is idle again.
            prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
            deadline = time.time() + 900  # a hang guard, generous: a loaded machine is slow, not broken
            while True:
                texts = prompts.all_inner_texts()
                done = len(texts) == jupyterlab["n_code"] and all(t.strip() not in ("[ ]:", "[*]:", "") for t in texts)
                if done and idle.count() >= 1:
                    break
                assert time.time() < deadline, f"Run All did not finish: prompts {texts}"
                page.wait_for_timeout(500)
            errors = page.locator("[data-mime-type='application/vnd.jupyter.stderr']:has-text('Traceback')")
            assert errors.count() == 0, errors.first.inner_text()

            slider = page.locator(".surgdiff-noising-t").first
            slider.scroll_into_view_if_needed()
            image = page.locator(".surgdiff-noising-xt").first
            status = page.locator(".surgdiff-noising-status").first
            before_src, before_png = image.get_attribute("src"), image.screenshot()
            t_of = lambda text: int(text.split("t = ")[1].split(" ")[0])
            t_before = t_of(status.inner_text())
            slider.locator(".noUi-handle").first.focus()
            for _ in range(25):
                page.keyboard.press("ArrowRight")
            page.wait_for_function("([el, src, t]) => el.getAttribute('src') !== src && "
                                   "!document.querySelector('.surgdiff-noising-status').innerText.includes(`t = ${t} `)",
                                   arg=[image.element_handle(), before_src, t_before], timeout=30_000)
            after_png = image.screenshot()
            text = status.inner_text()
            page.screenshot(path=str(output_dir / "07_explore_after_slider.png"), full_page=False)
            slider.screenshot(path=str(output_dir / "07_explore_slider.png"))
        finally:
            browser.close()
    assert after_png != before_png
    assert t_of(text) > t_before, text
    assert (output_dir / "07_explore_after_slider.png").stat().st_size > 10_000
