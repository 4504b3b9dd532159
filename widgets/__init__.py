"""The UI layer of clusterkit: ipywidgets on top of the headless library.

``clusterkit`` never imports this package. Names load lazily so that importing one widget
does not pull in the others.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "TSNEPlayer": "widgets.player",
    "Dashboard": "widgets.dashboard",
    "PairLabeler": "widgets.pairs",
}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'widgets' has no attribute {name!r}")
