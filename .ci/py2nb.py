"""Build a notebook from a percent-format script (``# %%`` code cells, ``# %% [markdown]``
cells whose lines start with ``# ``, ``# %% tags=["parameters"]`` for papermill).

Usage: python .ci/py2nb.py source.py notebooks/NN_name.ipynb
The notebook is what is committed (without outputs); this only saves typing JSON.
"""

from __future__ import annotations

import json
import re
import sys

import nbformat


def convert(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(chunks[1::2], chunks[2::2], strict=True):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.split("\n")]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            cell = nbformat.v4.new_code_cell(body)
            m = re.search(r"tags=(\[.*?\])", header)
            if m:
                cell.metadata["tags"] = json.loads(m.group(1))
            nb.cells.append(cell)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    return nb


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    nbformat.write(convert(open(src).read()), dst)
    print("wrote", dst)
