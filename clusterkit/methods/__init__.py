"""The methods, scikit-learn style: ``fit(X, constraints=None, *, y=None)``, ``labels_``,
``cluster_centers_``, ``predict``, ``transform``. Loaded lazily, one module per paper."""

from __future__ import annotations

import importlib

_NAMES = {
    "DEC": "clusterkit.methods.dec",
    "IDEC": "clusterkit.methods.dec",
    "DeepClusteringMethod": "clusterkit.methods.base",
    "ActiveDeepClustering": "clusterkit.methods.adc",
    "DCCF": "clusterkit.methods.dccf",
    "DECS": "clusterkit.methods.decs",
    "BalancedSemiSupervised": "clusterkit.methods.balanced",
    "ClusterNet": "clusterkit.methods.clusternet",
}
__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'clusterkit.methods' has no attribute {name!r}")
