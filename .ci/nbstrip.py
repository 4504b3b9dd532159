"""Strip outputs and execution counts from notebooks and give every cell an id (nbformat 4.5),
or (--check) fail if any carry outputs or lack an id.

Usage: python .ci/nbstrip.py [--check] notebooks/
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path


def needs_ids(nb: dict) -> bool:
    return (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5)


def dirty(nb: dict) -> bool:
    return any(
        c.get("outputs") or c.get("execution_count") is not None
        for c in nb["cells"]
        if c.get("cell_type") == "code"
    ) or (needs_ids(nb) and any("id" not in c for c in nb["cells"]))


def strip(nb: dict) -> dict:
    for c in nb["cells"]:
        if c.get("cell_type") == "code":
            c["outputs"] = []
            c["execution_count"] = None
        c.get("metadata", {}).pop("papermill", None)
        c.get("metadata", {}).pop("execution", None)
        if needs_ids(nb) and "id" not in c:
            c["id"] = uuid.uuid4().hex[:8]
    nb.get("metadata", {}).pop("papermill", None)
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if not a.startswith("--")] or [Path("notebooks")]
    files = sorted(f for p in paths for f in (p.glob("*.ipynb") if p.is_dir() else [p]))
    bad = []
    for f in files:
        nb = json.loads(f.read_text())
        if dirty(nb):
            bad.append(f)
            if not check:
                f.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n")
    if check and bad:
        print("Notebooks with outputs or cells without an id (run `make strip`):",
              *map(str, bad), sep="\n  ")
        return 1
    if bad:
        print("stripped:", *map(str, bad), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
