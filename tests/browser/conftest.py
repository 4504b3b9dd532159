"""Real JupyterLab in headless Chromium, for tests/browser (marked ``browser``).

- Chromium: Debian's ``/usr/bin/chromium`` (``CLUSTERKIT_CHROMIUM`` names another), never a
  browser downloaded by Playwright; ``make test`` installs the Debian package when it is
  missing and the machine allows it. Without a browser, or without the ``playwright`` Python
  package, or when Chromium does not start, every browser test is skipped with the reason.
- JupyterLab: ``python -m jupyterlab`` on a free loopback port with a throwaway token, serving
  a temporary copy of the notebooks (so the repository is never dirtied), with its own
  runtime, config, data, settings, workspaces and IPython folders (nothing of the user's
  leaks in), stopped at the end by its own process id (its process group; its kernels are
  shut down through its API first).
- Screenshots go to ``tests/browser/artifacts/`` (git-ignored; the path is printed at the
  end of the run); with ``CLUSTERKIT_SCREENSHOTS=notebooks/figures`` (``make screenshots``)
  the README's images are written there too.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("CLUSTERKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"]
VIEWPORT = {"width": 1500, "height": 1000}
#: JupyterLab user settings for the test server: no news or update pop-ups over the
#: screenshots; every cell kept in the page (no windowing) so locators find all outputs
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def pytest_collection_modifyitems(items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


_USED: list[bool] = []  # whether this session's tests wrote artifacts


def pytest_terminal_summary(terminalreporter):
    shots = sorted(ARTIFACTS.glob("*.png")) if _USED and ARTIFACTS.is_dir() else []
    if shots:
        terminalreporter.write_line(f"browser screenshots ({len(shots)}): {ARTIFACTS}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the playwright Python package: "
                    "pip install -e '.[test]' (make test does)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        why = ("run `make test` as root on Debian/Ubuntu to install it (apt-get install "
               "chromium)" if shutil.which("apt-get") else "this machine has no apt-get to "
               "install Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM}: {why}; or set CLUSTERKIT_CHROMIUM")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    _USED.append(True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


# module scope: Playwright's sync API keeps an asyncio loop marked as running in the main
# thread until it stops, which would break later tests that run their own event loop
@pytest.fixture(scope="module")
def browser(chromium_path, tmp_path_factory):
    """A Chromium context (fresh user-data-dir) driven by Playwright."""
    from playwright.sync_api import Error, sync_playwright

    pw = sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium_path,
            headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT, device_scale_factor=1)
    except Error as e:
        pw.stop()
        pytest.skip(f"Chromium at {chromium_path} does not start: {str(e).splitlines()[0]}")
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()
    pw.stop()


@dataclass
class Lab:
    url: str
    token: str
    notebooks: Path  # the temporary copy JupyterLab serves (the kernels' working folder)
    log: Path

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str, workspace: str) -> str:
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smoke_copy(src: Path, dst: Path, extra_cell: str | None = None) -> Path:
    """``src`` with ``profile = "smoke"`` in its parameters cell (and ``extra_cell``, code
    of the test's own, right after it), written to ``dst``."""
    nb = json.loads(src.read_text())
    cells = nb["cells"]
    i = next(k for k, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cells[i]["source"]).split("\n")
    lines = ['profile = "smoke"  # set by tests/browser' if ln.startswith("profile =") else ln
             for ln in lines]
    cells[i]["source"] = "\n".join(lines)
    if extra_cell:
        cells.insert(i + 1, {"cell_type": "code", "execution_count": None, "id": "browser-test",
                             "metadata": {"tags": ["browser-test"]}, "outputs": [],
                             "source": extra_cell})
    dst.write_text(json.dumps(nb, indent=1))
    return dst


@pytest.fixture(scope="module")
def lab(chromium_path, artifacts, tmp_path_factory) -> Lab:
    """JupyterLab on 127.0.0.1:<free port> with a throwaway token, serving a temporary
    folder; stopped (kernels, then its process group) after the browser tests."""
    base = tmp_path_factory.mktemp("lab")
    nbdir = base / "notebooks"
    nbdir.mkdir()
    folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
               "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython",
               "JUPYTERLAB_SETTINGS_DIR": "settings", "JUPYTERLAB_WORKSPACES_DIR": "workspaces"}
    env = dict(os.environ)
    for var, name in folders.items():
        (base / name).mkdir()
        env[var] = str(base / name)
    for rel, value in LAB_SETTINGS.items():
        f = base / "settings" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env.update({
        "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
        # the kernels train tiny models: one thread each, on a 2-core machine
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    })
    env.pop("JUPYTER_PATH", None)
    token = secrets.token_hex(24)
    port = _free_port()
    log = artifacts / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nbdir}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=nbdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    the_lab = Lab(f"http://127.0.0.1:{port}", token, nbdir, log)
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                the_lab.api("/api/status")
                break
            except OSError:
                if time.monotonic() - t0 > 90:
                    pytest.fail(f"JupyterLab did not answer in 90 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
        print(f"JupyterLab answered in {time.monotonic() - t0:.1f} s on {the_lab.url}")
        yield the_lab
    finally:
        _stop(the_lab, proc)


def _stop(lab: Lab, proc: subprocess.Popen) -> None:
    """Shut the kernels down through the API, then end JupyterLab's process group."""
    if proc.poll() is None:
        try:
            for k in lab.api("/api/kernels"):
                lab.api(f"/api/kernels/{k['id']}", method="DELETE")
        except OSError:
            pass
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
