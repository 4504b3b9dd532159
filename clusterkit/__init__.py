"""clusterkit: deep clustering with weak supervision, as a small library.

Headless by design: nothing here imports ipywidgets (the UI lives in the sibling package
``widgets``), and heavy optional packages (openTSNE, pooch, mlxtend) load lazily, so
``import clusterkit`` works on a bare GPU server with torch, numpy and scikit-learn.
"""

__version__ = "0.1.0"
