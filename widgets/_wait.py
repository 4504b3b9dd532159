"""Waiting in a notebook cell while the widgets stay live.

While a cell blocks, the kernel handles no widget messages, so buttons and sliders moved
meanwhile do nothing until the cell ends. Two ways around it, both used by ``Dashboard`` and
``PairLabeler``:

- ``wait_until`` (blocking): inside an IPython kernel that lets ``jupyter_ui_poll`` serve
  widget events from a running cell (ipykernel 6, which has ``do_one_iteration``), it polls
  them while it waits; elsewhere (no kernel, ipykernel 7, ``jupyter_ui_poll`` missing, a
  thread other than the main one) it calls the caller's plain ``fallback`` (a join).
- ``wait_until_async`` (``await`` it in a cell): ipykernel 7 handles widget messages while a
  cell awaits, so it sleeps with ``asyncio.sleep``; on ipykernel 6 it awaits
  ``jupyter_ui_poll``'s asynchronous poll instead. Outside a kernel it just sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_EVENTS = 10  # widget events handled per poll
INTERVAL = 0.05  # seconds between two polls


def kernel() -> Any:
    """The running IPython kernel, or None (plain Python, a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def _ui_events() -> Any:
    """``jupyter_ui_poll.ui_events`` when it can serve widget events from this kernel, else
    None. jupyter_ui_poll (1.1) drives ``kernel.do_one_iteration()``, which ipykernel 7
    removed: there it would poll nothing, silently."""
    k = kernel()
    if k is None or not hasattr(k, "do_one_iteration"):
        return None
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        return None
    return ui_events


def _deadline(timeout: float | None) -> float:
    return float("inf") if timeout is None else time.monotonic() + max(float(timeout), 0.0)


def wait_until(done: Callable[[], bool], timeout: float | None,
               fallback: Callable[[float | None], Any]) -> bool:
    """Block until ``done()`` or ``timeout`` seconds, serving widget events meanwhile where
    the kernel allows it (see the module docstring); elsewhere call ``fallback(timeout)``
    (a plain join). Returns ``done()``."""
    ui_events = _ui_events()
    if ui_events is None or threading.current_thread() is not threading.main_thread():
        fallback(timeout)
        return done()
    end = _deadline(timeout)
    with ui_events() as poll:
        while not done() and time.monotonic() < end:
            poll(POLL_EVENTS)
            time.sleep(INTERVAL)
    return done()


async def wait_until_async(done: Callable[[], bool], timeout: float | None = None,
                           interval: float = 0.1) -> bool:
    """Wait, without blocking the kernel's event loop, until ``done()`` or ``timeout``
    seconds; widget events are handled meanwhile. Returns ``done()``."""
    end = _deadline(timeout)
    ui_events = _ui_events()
    if ui_events is not None:  # ipykernel 6: messages wait in the queue unless polled
        async with ui_events() as poll:
            while not done() and time.monotonic() < end:
                await poll(POLL_EVENTS)
                await asyncio.sleep(interval)
        return done()
    while not done() and time.monotonic() < end:
        await asyncio.sleep(interval)
    return done()
