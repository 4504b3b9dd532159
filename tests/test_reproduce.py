"""benchmarks/reproduce.py: the tiny CPU setting writes its table; without a GPU and without
--cpu it refuses, with an estimate of the CPU run. Run as subprocesses with the GPU hidden
(CUDA_VISIBLE_DEVICES=""), so the tests behave the same on a machine that has one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reproduce.py"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_tiny_cpu_run_writes_the_table(tmp_path):
    out = tmp_path / "tables.md"
    p = _run("--cpu", "--tiny", "--only", "dccf", "--threads", "1", "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    text = out.read_text()
    assert "TINY SETTING" in text and "not** comparable" in text
    assert "## DCCF, contractive + focal (05)" in text
    assert "| mnist-5k [1000] | DCCF | ACC | 97.41 |" in text
    assert "|  |  | NMI | 93.32 |" in text
    assert "device: **CPU" in text and "seeds: 0;" in text
    assert "## DEC and IDEC" not in text  # --only kept the other experiments out


def test_refuses_without_gpu_and_prints_an_estimate(tmp_path):
    p = _run("--only", "tour", "--out", str(tmp_path / "x.md"))
    assert p.returncode == 2
    assert "no GPU" in p.stderr and "--cpu" in p.stderr
    assert "Estimate" in p.stderr and "would take about" in p.stderr
    assert "tour" in p.stderr
    assert not (tmp_path / "x.md").exists()


def test_tiny_never_overwrites_the_gpu_table():
    p = _run("--cpu", "--tiny", "--only", "dccf", "--out",
             str(ROOT / "benchmarks" / "results" / "paper_tables.md"))
    assert p.returncode == 2
    assert "refusing" in p.stderr


def test_bad_arguments_are_explained():
    p = _run("--cpu", "--only", "kmeans")
    assert p.returncode == 2 and "unknown experiment 'kmeans'" in p.stderr
    p = _run("--cpu", "--seeds", "0")
    assert p.returncode == 2 and "--seeds must be >= 1" in p.stderr


def test_tiny_ablations_put_every_arm_beside_the_paper(tmp_path):
    out = tmp_path / "ablations.md"
    p = _run("--cpu", "--tiny", "--only", "table4,dccf-ablation", "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    text = out.read_text()
    assert "## Balanced semi-supervised clustering: ablation (01)" in text
    for row, acc in (("all three", "98.08"), ("no L_r", "97.53"), ("no L_bal", "88.34"),
                     ("no L_semi", "84.00")):
        assert f"| mnist-5k [600] | {row} | ACC | {acc} |" in text, row
    assert "## DCCF: ablation (05)" in text
    for row, acc in (("neither term", "84.79"), ("contractive only", "94.30"),
                     ("focal only", "91.59"), ("DCCF (both)", "97.41")):
        assert f"| mnist-5k [1000] | {row} | ACC | {acc} |" in text, row
    assert "## DCCF, contractive + focal (05)" not in text
