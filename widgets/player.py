"""``TSNEPlayer``: play t-SNE frames of a run in JupyterLab (Play button, slider, colour-by).

Frames are drawn headlessly by :func:`clusterkit.tsne.render_png` and cached as PNG bytes,
one list per colour mode, filled lazily; playing only swaps ``Image.value``.
"""

from __future__ import annotations

import ipywidgets as W

from clusterkit.tsne import Frames, render_png

_MODE_NAMES = {"true": "true class", "pred": "predicted cluster"}


class TSNEPlayer:
    """An ipywidgets player over :class:`clusterkit.tsne.Frames`.

    ``play`` (Play, jslinked to ``slider``), ``slider`` (IntSlider over frame indices),
    ``color_by`` (ToggleButtons: true class / predicted cluster / per-point extras),
    ``image`` (Image showing the frame); ``widget`` is the whole VBox. ``show(i)`` moves to
    frame i; ``prerender()`` fills the cache for the current colour mode up front.
    """

    def __init__(self, frames: Frames, *, color_by: str | None = None, extra: str | None = None,
                 interval: int = 400, figsize: tuple[float, float] | None = None,
                 dpi: float = 80):
        self.frames = frames
        self.extra = extra
        self._figsize, self._dpi = figsize, dpi
        self._cache: dict[str, list[bytes | None]] = {}
        n = len(frames)
        modes = frames.color_modes
        if color_by is not None and color_by not in modes:
            raise ValueError(f"color_by {color_by!r} is not one of {modes}")
        self.play = W.Play(value=0, min=0, max=n - 1, step=1, interval=interval,
                           description="play", repeat=True)
        self.slider = W.IntSlider(value=0, min=0, max=n - 1, step=1, description="frame",
                                  continuous_update=True)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.color_by = W.ToggleButtons(
            options=[(_MODE_NAMES.get(m, m.removeprefix("extra:")), m) for m in modes],
            value=color_by or modes[0], description="colour")
        # at its own size: the VBox would stretch it (blurred) to the output's full width
        self.image = W.Image(format="png", layout=W.Layout(align_self="flex-start"))
        self.caption = W.Label()
        self.slider.observe(lambda ch: self._draw(ch["new"]), names="value")
        self.color_by.observe(lambda ch: self._draw(self.slider.value), names="value")
        self.widget = W.VBox([W.HBox([self.play, self.slider, self.caption]), self.color_by,
                              self.image])
        self._draw(0)

    def png(self, i: int, color_by: str | None = None) -> bytes:
        """PNG bytes of frame ``i`` in a colour mode (rendered once, then cached)."""
        mode = color_by or self.color_by.value
        cache = self._cache.setdefault(mode, [None] * len(self.frames))
        if cache[i] is None:
            cache[i] = render_png(self.frames, i, mode, extra=self.extra,
                                  figsize=self._figsize, dpi=self._dpi)
        return cache[i]

    def prerender(self, color_by: str | None = None) -> None:
        """Render every frame of a colour mode now, so the first play-through is smooth."""
        for i in range(len(self.frames)):
            self.png(i, color_by)

    def show(self, i: int) -> None:
        """Move to frame ``i`` (negative counts from the end)."""
        i = int(i) % len(self.frames)
        if self.slider.value != i:
            self.slider.value = i  # the observer draws
        else:
            self._draw(i)

    def _draw(self, i: int) -> None:
        self.image.value = self.png(i)
        self.caption.value = f"{i + 1}/{len(self.frames)}  {self.frames.title(i)}"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
