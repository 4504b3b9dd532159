from __future__ import annotations

import pytest

from clusterkit.knobs import Knob, switch, weight


def test_validation_coerces_and_explains():
    w = weight("alpha", 0.1, 0.0, 10.0)
    assert w.validate("0.5") == 0.5
    with pytest.raises(ValueError, match="below zero"):
        w.validate(-0.1)
    with pytest.raises(ValueError, match="exceed 10"):
        w.validate(11)
    with pytest.raises(ValueError, match="finite"):
        w.validate(float("nan"))
    b = Knob("budget", 100, "int", 0, 1000)
    assert b.validate(12.0) == 12
    with pytest.raises(ValueError, match="whole number"):
        b.validate(1.5)
    s = switch("use_kl")
    assert s.validate(0) is False
    with pytest.raises(ValueError, match="True or False"):
        s.validate("yes")
    c = Knob("threshold", "otsu", "choice", options=("otsu", "fixed"))
    with pytest.raises(ValueError, match="one of"):
        c.validate("median")
