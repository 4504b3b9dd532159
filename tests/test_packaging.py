"""The install files agree, and the library stays headless and light."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch", "opentsne": "opentsne"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = {_name(r) for r in py["dependencies"]}
    for extra in ("notebooks", "test"):
        want |= {_name(r) for r in py["optional-dependencies"][extra]}
    have = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^\s{2}- ([A-Za-z0-9_.-]+)", line)
        if m and m.group(1) not in ("python", "pip"):
            have.add(CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower()))
    assert have == want, f"only in environment.yml: {have - want}; only in pyproject: {want - have}"


def test_import_clusterkit_is_headless_and_light():
    code = ("import sys, clusterkit, clusterkit.methods, clusterkit.engine;"
            "from clusterkit.methods import IDEC;"
            "heavy = [m for m in ('ipywidgets', 'widgets', 'openTSNE', 'pooch', 'mlxtend',"
            " 'IPython', 'tqdm.notebook') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"import clusterkit pulled in: {out.stdout.strip()}"


def test_clusterkit_never_imports_widgets_or_ipywidgets():
    for f in (ROOT / "clusterkit").rglob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(ipywidgets|widgets)\b", text, re.M), f


def test_ci_calls_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make lab" in readme


def test_make_lab_serves_on_loopback_only():
    mk = (ROOT / "Makefile").read_text()
    lab = mk[mk.index("\nlab:"):].split("\n\n")[0]
    assert "--ServerApp.ip=127.0.0.1" in lab and "0.0.0.0" not in lab
    assert "token=''" not in lab and 'token=""' not in lab
