"""Execute every notebook headless in one profile and print the metrics they recorded.

    python benchmarks/demo_notebooks.py [--profile demo] [--only 00_tour] [--out out/demo]

This is `make demo`. Executed notebooks and their metrics JSON land in --out; the table
shows each notebook's main ACC/NMI/ARI/NE, its wall time, and the total.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo", choices=["smoke", "demo", "paper"])
    ap.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    ap.add_argument("--out", default=None, help="folder for executed notebooks and metrics")
    args = ap.parse_args(argv)

    import papermill as pm

    out = Path(args.out or ROOT / "out" / args.profile).resolve()
    out.mkdir(parents=True, exist_ok=True)
    nbs = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        nbs = [p for p in nbs if p.stem in args.only]
    rows, failed = [], []
    total = time.perf_counter()
    for nb in nbs:
        print(f"running {nb.name} ({args.profile}) ...", flush=True)
        metrics = out / f"{nb.stem}.json"
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out / nb.name), cwd=str(out), kernel_name="python3",
                                parameters=dict(profile=args.profile, interactive=False,
                                                metrics_path=str(metrics)),
                                progress_bar=False)
            m = json.loads(metrics.read_text())
        except Exception as e:  # noqa: BLE001 - reported in the table, run continues
            failed.append(nb.stem)
            m = {"error": type(e).__name__}
        rows.append((nb.stem, m, time.perf_counter() - t0))
    total = time.perf_counter() - total

    print(f"\n{'notebook':<30}{'ACC':>7}{'NMI':>7}{'ARI':>7}{'NE':>7}{'wall s':>9}")
    print("-" * 67)
    for stem, m, sec in rows:
        if "error" in m:
            print(f"{stem:<30}{'failed: ' + m['error']:>28}{sec:9.0f}")
            continue
        print(f"{stem:<30}" + "".join(f"{m.get(k, float('nan')):7.3f}"
                                      for k in ("acc", "nmi", "ari", "ne")) + f"{sec:9.0f}")
    print("-" * 67)
    print(f"{'total':<58}{total:9.0f}")
    print(f"\nexecuted notebooks and metrics in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
