"""The notebooks in a real JupyterLab, in headless Chromium (see conftest.py for the set-up).

1. ``00_tour`` (smoke profile), Run All: the dashboard renders with live controls while the
   later cells wait (``await dash.result_async()``), training changes the plots, and a weight
   slider moved while it trains is a change mark in the run's history, read back from the
   kernel by a cell run in the page.
2. ``03_active_clustering`` (smoke), Run All: the pair labeler shows a pair of images;
   Same / Different / Undo update the progress and the answers file on disk, and "Train with
   these answers" lets the waiting cell (``await labeler.until_trained()``) go on.
3. The t-SNE player of ``00_tour`` plays, and its slider moves the frames.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.browser.conftest import ROOT, smoke_copy

pytestmark = pytest.mark.browser

#: The test's own cell in its copy of 00_tour (never in the repository's notebook): the
#: dashboard's run holds after its 3rd step until a knob is changed (60 s at most), so that
#: the test, a slow person, moves a slider while the run is training.
HOLD_CELL = """\
# inserted by tests/browser into its temporary copy
import time as _time

import widgets.dashboard as _wd

def _hold(event, run, rec):
    if event == "step" and run.step == 3:
        end = _time.monotonic() + 60
        while _time.monotonic() < end and all(run.requested(k) == v
                                               for k, v in run.knobs.items()):
            _time.sleep(0.05)

_wd_init = _wd.Dashboard.__init__

def _init_and_hold(self, *args, **kw):
    _wd_init(self, *args, **kw)
    self.run.callbacks.append(_hold)

_wd.Dashboard.__init__ = _init_and_hold
"""
README_SHOTS = os.environ.get("CLUSTERKIT_SCREENSHOTS")  # make screenshots: notebooks/figures


def expect(x):
    from playwright.sync_api import expect as _expect

    return _expect(x)


def shot(target, artifacts: Path, name: str, readme: str | None = None) -> Path:
    """Screenshot of a page or element into the artifacts (and the README's figure)."""
    path = artifacts / f"{name}.png"
    target.screenshot(path=str(path))
    if readme and README_SHOTS:
        _small_png(path, ROOT / README_SHOTS / f"browser_{readme}.png")
    return path


def _small_png(src: Path, dst: Path, max_bytes: int = 250_000) -> None:
    """A copy for the README: 256 colours (widgets and plots have few), at most ~250 kB."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    scale = 1.0
    while True:
        im = img if scale == 1.0 else img.resize((int(img.width * scale),
                                                  int(img.height * scale)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
        if dst.stat().st_size <= max_bytes or scale < 0.5:
            return
        scale *= 0.85


def _panel(name: str) -> str:
    return ("Array.from(window.jupyterapp.shell.widgets('main'))"
            f".find(w => w.context && w.context.path === {json.dumps(name)})")


def open_notebook(page, lab, name: str, workspace: str) -> None:
    t0 = time.monotonic()
    page.goto(lab.page_url(name, workspace))
    page.wait_for_function(f"""() => {{
        try {{
            const p = {_panel(name)};
            const k = p && p.sessionContext.session && p.sessionContext.session.kernel;
            return !!k && k.status === 'idle';
        }} catch (e) {{ return false; }}
    }}""", timeout=120_000)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # room for the widgets
    print(f"{name}: open with an idle kernel in {time.monotonic() - t0:.1f} s")


def run_all(page, name: str) -> None:
    """Run > Run All Cells on the notebook ``name`` (the menu's command)."""
    page.evaluate(f"""() => {{
        const p = {_panel(name)};
        window.jupyterapp.shell.activateById(p.id);
        window.jupyterapp.commands.execute('notebook:run-all-cells');
    }}""")


def run_new_cell(page, name: str, code: str) -> None:
    """Add a cell at the end of ``name`` and run it (it queues behind running cells)."""
    page.evaluate(f"""async (code) => {{
        const app = window.jupyterapp, p = {_panel(name)};
        app.shell.activateById(p.id);
        const nb = p.content;
        nb.activeCellIndex = nb.widgets.length - 1;
        await app.commands.execute('notebook:insert-cell-below');
        nb.activeCell.model.sharedModel.setSource(code);
        app.commands.execute('notebook:run-cell');
    }}""", code)


def output_with(page, inner):
    """The cell output holding ``inner`` (a locator)."""
    return page.locator(".jp-OutputArea-output").filter(has=inner)


def drag(page, handle, dx: float) -> None:
    """Press the mouse on ``handle``, move it ``dx`` pixels sideways, release."""
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=8)
    page.mouse.up()


def settled(page, img, old_src: str, quiet_ms: int = 1500) -> str:
    """Wait until ``img`` shows a picture other than ``old_src`` and has kept it for
    ``quiet_ms`` (the live view's last render is in); returns its src."""
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s && el.complete",
                           arg=[img.element_handle(), old_src], timeout=30_000)
    src = img.get_attribute("src")
    while True:
        page.wait_for_timeout(quiet_ms)
        now = img.get_attribute("src")
        if now == src:
            return src
        src = now


@pytest.fixture(scope="module")
def tour(lab, browser):
    """00_tour in the smoke profile, opened in its own tab and Run All started."""
    nb = smoke_copy(ROOT / "notebooks" / "00_tour.ipynb", lab.notebooks / "00_tour.ipynb",
                    HOLD_CELL)
    page = browser.new_page()
    open_notebook(page, lab, nb.name, "tour")
    run_all(page, nb.name)
    yield page
    page.close()


def test_dashboard_stays_live_during_run_all(tour, artifacts):
    page = tour
    dash = output_with(page, page.locator("button", has_text="pause"))
    expect(dash).to_be_visible(timeout=240_000)
    buttons = {b: dash.locator("button", has_text=b) for b in ("start", "pause", "stop")}
    img = dash.locator("img")

    # the run holds at step 3 (HOLD_CELL) while the next cell awaits result_async()
    expect(dash).to_contain_text(re.compile(r"running · phase cluster .* step 3/\d+"),
                                 timeout=120_000)
    expect(buttons["start"]).to_be_disabled()
    expect(buttons["pause"]).to_be_enabled()
    expect(buttons["stop"]).to_be_enabled()
    page.wait_for_timeout(1500)  # one refresh of the live view: the plots at step 3
    expect(img).to_have_attribute("src", re.compile("."))
    src_running = img.get_attribute("src")

    gamma = dash.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(r"^gamma$")))
    readout = gamma.locator(".widget-readout")
    before = float(readout.inner_text())
    drag(page, gamma.locator(".noUi-handle"), -25)
    # the kernel answered the slider while a later cell was waiting: that is the fix
    expect(dash).to_contain_text(re.compile(r"gamma = [-0-9.e]+: the loop uses it from its "
                                            r"next step"), timeout=30_000)
    moved = float(readout.inner_text())
    assert moved < before, (before, moved)
    shot(dash, artifacts, "1_dashboard_slider_moved")

    # training goes on and ends; the plots change (epochs, clusters, the change mark)
    expect(dash).to_contain_text(re.compile(r"done · phase finished"), timeout=120_000)
    expect(buttons["pause"]).to_be_disabled()
    settled(page, img, src_running)  # raises if the plots never change after step 3
    shot(dash, artifacts, "1_dashboard_done", readme="dashboard")

    # read the history back from the kernel, in a cell run in the page (after Run All)
    run_new_cell(page, "00_tour.ipynb", 'import json\nprint("CHANGES=" + json.dumps('
                 '[{k: c[k] for k in ("knob", "old", "new", "step")} '
                 'for c in dash.run.history.changes], default=str))')
    out = page.locator(".jp-OutputArea-output", has_text="CHANGES=")
    expect(out).to_be_visible(timeout=300_000)
    changes = json.loads(out.inner_text().split("CHANGES=", 1)[1].strip().splitlines()[0])
    assert [c["knob"] for c in changes] == ["gamma"], changes
    c = changes[0]
    assert c["new"] == pytest.approx(moved, rel=0.01) and c["old"] == pytest.approx(before)
    assert 3 <= c["step"] <= 8, c  # applied while it trained (smoke: 8 steps in all)
    shot(page, artifacts, "1_tour_page")


def test_pair_labeler_buttons_progress_and_answers_file(lab, browser, artifacts):
    nb = smoke_copy(ROOT / "notebooks" / "03_active_clustering.ipynb",
                    lab.notebooks / "03_active_clustering.ipynb")
    answers = lab.notebooks / "answers_mnist-5k_0.jsonl"
    page = browser.new_page()
    try:
        open_notebook(page, lab, nb.name, "pairs")
        run_all(page, nb.name)
        lab_out = output_with(page, page.locator("button", has_text="Same (s)"))
        expect(lab_out).to_be_visible(timeout=240_000)
        pair = lab_out.locator("img").first
        page.wait_for_function("(el) => el.complete && el.naturalWidth > 0",
                               arg=pair.element_handle())
        w, h = pair.evaluate("(el) => [el.naturalWidth, el.naturalHeight]")
        assert w > 1.5 * h, (w, h)  # the two images of the pair, side by side
        expect(lab_out).to_contain_text("0 answered this round")
        bar = lab_out.locator(".progress-bar")

        def progress() -> float:
            return float(bar.evaluate("(el) => parseFloat(el.style.width) || 0"))

        def logged() -> list[dict]:
            return [json.loads(x) for x in answers.read_text().splitlines()] \
                if answers.exists() else []

        assert progress() == 0
        button = {b: lab_out.locator("button", has_text=b)
                  for b in ("Same (s)", "Different (d)", "Undo (u)", "Train with these answers")}
        button["Same (s)"].click()
        expect(lab_out).to_contain_text("1 answered this round; 1 same / 0 different")
        one = progress()
        assert one > 0
        assert [e["answer"] for e in logged() if e["event"] == "answer"] == ["same"]

        button["Different (d)"].click()
        expect(lab_out).to_contain_text("2 answered this round; 1 same / 1 different")
        assert progress() == pytest.approx(2 * one)
        ans = [e for e in logged() if e["event"] == "answer"]
        assert [a["answer"] for a in ans] == ["same", "different"]
        assert all(a["source"] == "human" for a in ans)
        shot(lab_out, artifacts, "2_pairs_two_answers", readme="pairs")

        button["Undo (u)"].click()
        expect(lab_out).to_contain_text("1 answered this round; 1 same / 0 different")
        expect(lab_out).to_contain_text("Undid different")
        assert progress() == pytest.approx(one)
        assert [e["event"] for e in logged()].count("undo") == 1
        shot(lab_out, artifacts, "2_pairs_after_undo")

        # the next cell has been waiting for the person: a trained round lets it go on
        button["Train with these answers"].click()
        expect(lab_out).to_contain_text(re.compile(r"round 1 trained on \d+ pairs"),
                                        timeout=120_000)
        printed = page.locator(".jp-OutputArea-output", has_text="'pairs'")
        expect(printed.first).to_be_visible(timeout=60_000)  # print(human.rounds_[-1])
        shot(page, artifacts, "2_pairs_page")
    finally:
        page.close()


def test_tsne_player_plays_and_its_slider_moves_frames(tour, artifacts):
    page = tour
    player = output_with(page, page.locator(".widget-play"))
    expect(player).to_be_visible(timeout=300_000)
    readout = player.locator(".widget-readout")
    caption = player.locator(".widget-label", has_text=re.compile(r"^\d+/\d+"))
    img = player.locator("img")
    expect(readout).to_have_text("0")
    n = int(re.match(r"1/(\d+)", caption.inner_text()).group(1))
    assert n >= 2, caption.inner_text()
    src0 = img.get_attribute("src")

    play = player.locator(".widget-play button").first
    play.click()
    expect(readout).not_to_have_text("0", timeout=15_000)
    expect(caption).not_to_have_text(re.compile(r"^1/"))
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s",
                           arg=[img.element_handle(), src0])
    shot(player, artifacts, "3_player_playing")
    play.click()  # pause

    track = player.locator(".widget-slider .noUi-target")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    handle = player.locator(".widget-slider .noUi-handle")
    hb = handle.bounding_box()
    drag(page, handle, box["x"] + box["width"] + 20 - (hb["x"] + hb["width"] / 2))
    expect(readout).to_have_text(str(n - 1))
    expect(caption).to_contain_text(f"{n}/{n}")
    page.wait_for_function("([el, s]) => el.complete && el.getAttribute('src') !== s",
                           arg=[img.element_handle(), src0])
    shot(player, artifacts, "3_player_last_frame", readme="player")
    drag(page, handle, -(box["width"] + 40))
    expect(readout).to_have_text("0")
    expect(caption).to_contain_text(f"1/{n}")
    shot(player, artifacts, "3_player_first_frame")
