"""Knobs: the hyperparameters a person may change while a run trains.

A method declares its knobs (name, kind, range, default from its hyperparameters); the
engine holds the current values and applies changes, made from any thread, at the start of
the next optimizer step, logging each change in the run's history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

KnobKind = Literal["log", "float", "int", "bool", "choice"]


@dataclass(frozen=True)
class Knob:
    """One live hyperparameter.

    kind: ``log`` (a positive float shown on a log-scale slider; 0 is allowed when
    ``low == 0`` and means "off"), ``float``, ``int`` (e.g. a constraint budget), ``bool``
    (switch a loss term on or off) or ``choice`` (one of ``options``).
    """

    name: str
    value: Any
    kind: KnobKind = "float"
    low: float | None = None
    high: float | None = None
    options: tuple = ()
    help: str = ""
    group: str = "weights"

    def with_value(self, value: Any) -> Knob:
        return replace(self, value=self.validate(value))

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this knob's type, or raise ``ValueError`` saying why."""
        name = self.name
        if self.kind == "bool":
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise ValueError(f"knob {name!r} is an on/off switch; got {value!r}, "
                             "pass True or False")
        if self.kind == "choice":
            if value not in self.options:
                raise ValueError(f"knob {name!r} must be one of {list(self.options)}; "
                                 f"got {value!r}")
            return value
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"knob {name!r} takes a number; got {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"knob {name!r} must be finite; got {value!r}")
        if self.kind == "int":
            if v != int(v):
                raise ValueError(f"knob {name!r} takes a whole number; got {value!r}")
            v = int(v)
        if self.low is not None and v < self.low:
            what = "below zero" if self.low == 0 else f"below its minimum {self.low:g}"
            raise ValueError(f"knob {name!r} cannot be {what} (got {value!r}); "
                             f"choose a value in [{self.low:g}, {self.high:g}]"
                             if self.high is not None else
                             f"knob {name!r} cannot be {what} (got {value!r})")
        if self.high is not None and v > self.high:
            raise ValueError(f"knob {name!r} cannot exceed {self.high:g} (got {value!r}); "
                             f"choose a value in [{self.low:g}, {self.high:g}]")
        return v


def weight(name: str, value: float, low: float = 0.0, high: float = 10.0, help: str = "") -> Knob:
    """A non-negative loss weight on a log-scale slider (0 switches the term off)."""
    return Knob(name, float(value), "log", low, high, help=help, group="weights")


def switch(name: str, value: bool = True, help: str = "") -> Knob:
    """An on/off switch for a loss term (the papers' ablations)."""
    return Knob(name, bool(value), "bool", help=help, group="terms")
