"""benchmarks/reproduce.py: the tiny CPU setting writes its table; without a GPU and without
--cpu it refuses, with an estimate of the CPU run. Run as subprocesses with the GPU hidden
(CUDA_VISIBLE_DEVICES=""), so the tests behave the same on a machine that has one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow  # probes two experiments twice each (17 s here): `make test` only
def test_the_estimate_of_a_run_with_a_stop_rule_says_it_is_an_upper_bound():
    p = _run("--estimate", "--only", "dccf,clusternet")
    assert p.returncode == 0, p.stderr[-2000:]
    lines = {ln.split()[0]: ln for ln in p.stderr.splitlines() if ln.startswith("  ")}
    assert "at most" in lines["dccf"] and "0.1 % of the labels" in lines["dccf"]
    assert "at most" not in lines["clusternet"]  # it runs every epoch it is given


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


@pytest.mark.slow  # two tiny ablations end to end (17 s here): `make test` only
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


@pytest.mark.slow  # several end-to-end subprocess runs: `make test`, not test-fast
def test_runs_are_recorded_as_they_end_and_not_run_again(tmp_path):
    out, store = tmp_path / "t.md", tmp_path / "runs.json"
    p = _run("--cpu", "--tiny", "--only", "dccf", "--out", str(out), "--results", str(store))
    assert p.returncode == 0, p.stderr[-2000:]
    recs = json.loads(store.read_text())
    assert [r["key"] for r in recs] == ["dccf|mnist-5k|0|smoke"]
    first = recs[0]["rows"]["DCCF"]
    assert 0.0 <= first["acc"] <= 1.0 and recs[0]["seconds"] > 0 and recs[0]["device"]
    # a second call keeps the recorded run, adds the new one, and tables both
    p = _run("--cpu", "--tiny", "--only", "dccf,adc", "--out", str(out), "--results", str(store))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "1 of 2 run(s) are already in" in p.stderr
    recs = json.loads(store.read_text())
    assert [r["key"] for r in recs] == ["dccf|mnist-5k|0|smoke", "adc|mnist-5k|0|smoke"]
    assert recs[0]["rows"]["DCCF"] == first
    text = out.read_text()
    assert "## DCCF, contractive + focal (05)" in text and "## Active Deep Clustering" in text
    assert "2 run(s)" in text
    # a broken record file is refused with a message, not overwritten
    store.write_text("{not json")
    p = _run("--cpu", "--tiny", "--only", "dccf", "--out", str(out), "--results", str(store))
    assert p.returncode != 0 and "not valid JSON" in p.stderr
    assert store.read_text() == "{not json"


@pytest.mark.slow  # several end-to-end subprocess runs: `make test`, not test-fast
def test_budget_leaves_the_runs_that_would_not_fit(tmp_path):
    out = tmp_path / "t.md"
    p = _run("--cpu", "--budget", "0.05", "--only", "dccf", "--datasets", "usps", "--seeds",
             "1", "--out", str(out), "--results", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "left for a later call" in p.stderr and "dccf usps seed 0 (about" in p.stderr
    assert not out.exists() and not (tmp_path / "r.json").exists()
    p = _run("--cpu", "--budget", "0", "--only", "dccf")
    assert p.returncode == 2 and "--budget must be a positive number" in p.stderr


def _module():
    if "reproduce" in sys.modules:
        return sys.modules["reproduce"]
    spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_runs_go_breadth_first():
    mod = _module()
    exps = [mod.BY_KEY[k] for k in ("tour", "balanced", "dccf")]
    jobs = [(e.key, d, s) for e, d, s in mod.job_order(exps, 2, False, None)]
    # the open issues' papers first (PRIORITY), seed 0 on MNIST before any second dataset
    assert jobs[:3] == [("balanced", "mnist", 0), ("dccf", "mnist", 0), ("tour", "mnist", 0)]
    assert jobs.index(("balanced", "mnist", 1)) > jobs.index(("tour", "fashion-mnist", 0))
    assert len(jobs) == 2 * (3 + 2 + 3)
    assert [j for j in mod.job_order(exps, 1, False, {"usps"})] == [
        (mod.BY_KEY["balanced"], "usps", 0), (mod.BY_KEY["dccf"], "usps", 0),
        (mod.BY_KEY["tour"], "usps", 0)]


@pytest.mark.slow  # several end-to-end subprocess runs: `make test`, not test-fast
def test_gpu_session_script_dry_run(tmp_path):
    """benchmarks/gpu_session.sh is what a session with a GPU runs in its one device call:
    its DRY_RUN checks every step on a CPU, so that scarce device time is not lost to a typo."""
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "OUT": str(out),
           "PY": sys.executable, "DRY_RUN": "1", "MPLBACKEND": "Agg",
           "CKPT_DIR": str(tmp_path / "ck0")}  # not the repository's .ckpt
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    names = sorted(f.name for f in out.iterdir())
    assert names == ["bench_gpu.txt", "device.txt", "paper_tables.json", "paper_tables.md",
                     "reproduce.log"]
    assert "samples/s" in (out / "bench_gpu.txt").read_text()
    assert [r["key"] for r in json.loads((out / "paper_tables.json").read_text())] == [
        "dccf|mnist-5k|0|smoke"]
    assert "## DCCF, contractive + focal (05)" in (out / "paper_tables.md").read_text()
    # a run cut at the budget comes back packed, and a later call, given it, continues it
    ck = tmp_path / "ck"
    cut = {**env, "OUT": str(tmp_path / "out3"), "BUDGET_MIN": "0.0001", "BENCH_GPU_S": "0",
           "CKPT_DIR": str(ck)}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], cwd=tmp_path,
                       env=cut, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    parts = sorted((tmp_path / "out3").glob("ckpt.tar.part-*"))
    assert [f.name for f in parts] == ["ckpt.tar.part-aa"]
    assert not (tmp_path / "out3" / "paper_tables.json").exists()  # nothing ended
    subprocess.run(["rm", "-rf", str(ck)], check=True)
    subprocess.run(f"cat {parts[0]} | tar -x -C /", shell=True, check=True)
    assert (ck / "dccf_mnist-5k_0_smoke").is_dir()
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], cwd=tmp_path,
                       env={**cut, "OUT": str(tmp_path / "out4"), "BUDGET_MIN": "6"},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert [r["key"] for r in json.loads((tmp_path / "out4" / "paper_tables.json").read_text())
            ] == ["dccf|mnist-5k|0|smoke"]
    assert not (ck / "dccf_mnist-5k_0_smoke").exists()
    assert not list((tmp_path / "out4").glob("ckpt.tar.part-*"))
    # without a GPU and without DRY_RUN it refuses at once
    env.pop("DRY_RUN")
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], cwd=tmp_path,
                       env={**env, "OUT": str(tmp_path / "out2")}, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "no GPU is visible" in p.stderr


#: clusterkit's dependencies that the GPU machines' image lacks (the device tool's KINDS.md):
#: the GPU path (reproduce.py, bench_gpu.py, the methods, the full datasets) must not need them
NOT_ON_THE_GPU_MACHINE = ("pooch", "openTSNE", "mlxtend", "ipywidgets", "papermill",
                          "jupyter_ui_poll")

_BARE = """
import sys
for name in {names!r}:
    sys.modules[name] = None  # import raises ImportError, as on the bare GPU image
sys.path[:0] = [{root!r}, {bench!r}]
import reproduce, bench_gpu  # noqa: F401
from clusterkit import datasets
from clusterkit.methods import (DCCF, DEC, DECS, IDEC, ActiveDeepClustering,
                                BalancedSemiSupervised, ClusterNet)  # noqa: F401
for name in ("usps", "mnist"):
    ds = datasets.load(name)
    print("loaded", ds.name, len(ds))
"""


def test_the_gpu_path_needs_only_what_the_gpu_machine_has(tmp_path):
    data = ROOT.parent / "shared" / "data"
    if not (data / "usps").is_dir() or not (data / "mnist").is_dir():
        pytest.skip(f"real data files not found at {data} (../shared/data)")
    code = _BARE.format(names=NOT_ON_THE_GPU_MACHINE, root=str(ROOT),
                        bench=str(ROOT / "benchmarks"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "CLUSTERKIT_DATA": str(data),
           "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "loaded usps 9298" in p.stdout and "loaded mnist 70000" in p.stdout


def test_a_run_cut_anywhere_and_continued_ends_as_an_uninterrupted_run(tmp_path):
    """--checkpoints: every fit of a run is a stage kept on disk; a stage cut at the deadline
    is saved at a step boundary and continued by the next call, to the same numbers."""
    import torch

    from clusterkit import datasets

    mod = _module()
    torch.set_num_threads(1)
    ds = datasets.load("mnist-5k", subset=300, seed=0)
    cfg = {"profile": "smoke", "device": "cpu", "verbose": False, "override": {}}
    whole = mod.run_dccf(ds, 0, cfg)

    class CutAt(mod.Pieces):
        """Out of time at step 2 of the run's ``stage``-th stage (a clock would be flaky): that
        stage's run is stopped there and saved, as at a real deadline."""
        stage = 1
        started = 0

        def out_of_time(self, run=None):
            if run is None:  # asked once as each stage starts
                self.started += 1
                return False
            return self.started == self.stage and run.step >= 2

    keep = mod.Pieces(tmp_path / "k", "dccf|probe|0|smoke")
    assert mod.run_dccf(ds, 0, {**cfg, "pieces": keep}) == whole
    pre = torch.load(keep.folder / "pre.done.pt", weights_only=True)
    assert pre["optimizer"] is None and pre["counters"]["step"] > 3  # a finished stage
    for stage, name in ((1, "pre"), (2, "DCCF")):  # cut in the pretraining; in clustering
        pieces = CutAt(tmp_path / name, "dccf|mnist-5k|0|smoke")
        pieces.stage = stage
        with pytest.raises(mod.OutOfTime, match="saved at step 2"):
            mod.run_dccf(ds, 0, {**cfg, "pieces": pieces})
        assert (pieces.folder / f"{name}.part.pt").exists()
        assert (pieces.folder / "pre.done.pt").exists() == (name == "DCCF")
        again = mod.Pieces(pieces.root, pieces.job)  # the next call: no deadline this time
        assert mod.run_dccf(ds, 0, {**cfg, "pieces": again}) == whole
        assert not (pieces.folder / f"{name}.part.pt").exists()
        assert (pieces.folder / "DCCF.done.pt").exists()


def test_admit_runs_what_fits_keeps_one_piece_and_continues_what_began():
    admit = _module().admit
    assert admit(100, 200, resumed=False, splittable=True, pieces=True) == "run"
    assert admit(None, 200, resumed=False, splittable=True, pieces=False) == "run"
    assert admit(300, 200, resumed=False, splittable=True, pieces=False) == "skip"
    assert admit(300, 200, resumed=False, splittable=True, pieces=True) == "piece"
    assert admit(300, 200, resumed=False, splittable=False, pieces=True) == "skip"
    assert admit(300, 200, resumed=True, splittable=True, pieces=True) == "run"
    assert admit(10, 0, resumed=True, splittable=True, pieces=True) == "skip"


@pytest.mark.slow  # three end-to-end subprocess runs: `make test`, not test-fast
def test_checkpoints_carry_a_run_across_calls_and_are_removed_once_recorded(tmp_path):
    ck = tmp_path / "ck"
    p = _run("--cpu", "--tiny", "--only", "dccf", "--out", str(tmp_path / "whole.md"),
             "--results", str(tmp_path / "whole.json"))
    assert p.returncode == 0, p.stderr[-2000:]
    # a budget that ends before the run starts: nothing recorded, the run's folder kept
    args = ("--cpu", "--tiny", "--only", "dccf", "--out", str(tmp_path / "t.md"), "--results",
            str(tmp_path / "r.json"), "--checkpoints", str(ck))
    p = _run(*args, "--budget", "0.0001")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "cut at the budget and saved in" in p.stderr
    assert not (tmp_path / "r.json").exists()
    assert (ck / "dccf_mnist-5k_0_smoke" / "seconds.json").exists()
    p = _run(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.loads((tmp_path / "r.json").read_text())
    whole = json.loads((tmp_path / "whole.json").read_text())
    assert [r["key"] for r in rec] == ["dccf|mnist-5k|0|smoke"]
    assert rec[0]["rows"] == whole[0]["rows"]
    assert not (ck / "dccf_mnist-5k_0_smoke").exists()
