"""What a notebook records for papermill and CI: its final metrics as JSON.

The main method's ``acc``, ``nmi``, ``ari``, ``ne`` and ``seconds`` sit at the top level;
baselines sit under their own names: ``{"acc": .., "nmi": .., "kmeans": {"acc": ..}}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REQUIRED = ("acc", "nmi", "ari", "ne", "seconds")


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_metrics(path: str | Path | None, main: Mapping[str, Any], **others: Any) -> dict:
    """Write ``main`` (needs acc, nmi, ari, ne, seconds) and named baselines to ``path``.

    Returns the dict written; ``path=None`` only returns it (a person's run writes nothing).
    """
    missing = [k for k in REQUIRED if k not in main]
    if missing:
        raise ValueError(f"the main metrics lack {missing}; give acc, nmi, ari, ne and seconds")
    out = _plain({**main, **others})
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out
