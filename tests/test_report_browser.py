"""The HTML report in a real headless browser (Playwright driving Debian's /usr/bin/chromium).

Skipped when Playwright or chromium is missing, except under CI=true, where that is a failure.
Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlapscope import report as rp
from overlapscope.cli import app
from overlapscope.renderers.html import write_html
from overlapscope.pipeline import load
from test_report_helpers import HOSTILE, hostile_run, tbo_run

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
runner = CliRunner()


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser():
    if why := _missing():
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                       args=ARGS, viewport={"width": 1400, "height": 900})
        yield context
        context.close()


@dataclass
class Opened:
    page: object
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def open_report(browser, path: Path) -> Opened:
    page = browser.new_page()
    opened = Opened(page)
    page.on("request", lambda r: opened.requests.append(r.url))
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return opened


def drawn(page, plot_id: str) -> None:
    """Charts are drawn as they come into view: scroll to one and wait for plotly's SVG."""
    page.locator(f"#{plot_id}").scroll_into_view_if_needed()
    page.wait_for_function("id => document.getElementById(id).querySelector('svg.main-svg')", arg=plot_id,
                           timeout=60_000)


def assert_clean(opened: Opened, path: Path) -> None:
    assert opened.errors == []
    assert opened.dialogs == []
    assert opened.requests == [path.resolve().as_uri()], "the page made a network request"


def assert_timelines_drawn(page, ranks: list[int]) -> None:
    for rank in ranks:
        drawn(page, f"timeline-rank-{rank}")
        lanes = page.evaluate(
            """id => { const d = document.getElementById(id);
                       return [d.querySelectorAll('svg.main-svg').length, d.querySelectorAll('.scatterlayer .trace').length]; }""",
            f"timeline-rank-{rank}")
        assert lanes[0] > 0 and lanes[1] > 0, f"rank {rank}: timeline not drawn ({lanes})"


def shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


@pytest.fixture(scope="module")
def racy_report(tmp_path_factory):
    """A two-rank run with a race on each rank, a run.json, and a history of two recorded runs."""
    tmp = tmp_path_factory.mktemp("browser")
    run = tbo_run(tmp / "run", overlapped=True, race=True, manifest={"model": "deepseek_v4_tbo", "variant": "comm_stream"})
    inline = tbo_run(tmp / "inline", overlapped=False)
    db = tmp / "history.db"
    for recorded in (inline, run):
        assert runner.invoke(app, ["analyze", str(recorded), "--region", "tbo", "--db", str(db)]).exit_code == 0
    out = tmp / "report.html"
    result = runner.invoke(app, ["report", str(run), "--region", "tbo", "--db", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    analyzed = json.loads(runner.invoke(app, ["analyze", str(run), "--region", "tbo", "--json"]).stdout)
    return out, analyzed


def test_report_in_a_browser(browser, racy_report):
    path, analyzed = racy_report
    opened = open_report(browser, path)
    page = opened.page
    assert_timelines_drawn(page, [0, 1])

    # the summary numbers on the page are analyze --json's, exactly, and shown as such
    cells = page.evaluate("""() => Array.from(document.querySelectorAll('#ranks-table tr[data-rank], #regions-table tr[data-rank]'))
        .map(tr => ({table: tr.closest('table').id, rank: +tr.dataset.rank, region: tr.dataset.region || null,
                     values: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-field]'))
                       .map(td => [td.dataset.field, [td.dataset.value, td.textContent]]))}))""")
    expected = [("ranks-table", r["rank"], None, r) for r in analyzed["ranks"]]
    expected += [("regions-table", r["rank"], r["region"], r) for r in analyzed["regions"]]
    assert [(c["table"], c["rank"], c["region"]) for c in cells] == [e[:3] for e in expected]
    for cell, (_, _, _, row) in zip(cells, expected, strict=True):
        for name, (raw, _shown) in cell["values"].items():
            assert json.loads(raw) == row[name], (cell, name)
        assert cell["values"]["overlap_pct"][1] == shown(row["overlap_pct"])

    # race findings link to their place on the timeline, and the timeline marks them
    assert page.locator("#races-table tbody tr").count() == 2
    assert page.evaluate("document.getElementById('timeline-rank-1').layout.shapes.length") == 1
    link = page.locator("#race-1 a.to-timeline")
    x0, x1 = float(link.get_attribute("data-x0")), float(link.get_attribute("data-x1"))
    link.click()
    page.wait_for_function("x0 => document.getElementById('timeline-rank-0').layout.xaxis.range[0] < x0", arg=x0)
    lo, hi = page.evaluate("document.getElementById('timeline-rank-0').layout.xaxis.range")
    assert lo < x0 < x1 < hi and hi - lo < 100, "the timeline did not zoom to the race"

    # run.json facts, profiler steps and the history trend
    facts = page.inner_text("#facts-table")
    assert "deepseek_v4_tbo" in facts and "comm_stream" in facts
    drawn(page, "steps-plot")
    drawn(page, "history-plot")
    assert page.locator("#history-plot .scatterlayer .trace").count() == 2  # whole trace and tbo
    history = page.inner_text("#history-table")
    assert "#2" in history and "100.0 %" in history

    assert_clean(opened, path)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()


def test_hostile_names_render_inert(browser, tmp_path):
    from test_report import hostile_findings

    trace = load([hostile_run(tmp_path / "hostile")])
    path = write_html(rp.build_report(trace, [re.escape(HOSTILE[2])], races=hostile_findings()),
                      tmp_path / "hostile.html")
    opened = open_report(browser, path)
    page = opened.page
    assert_timelines_drawn(page, [0])
    assert page.evaluate("typeof window.__pwned") == "undefined"
    figures = page.locator("script.figure").count()
    assert page.evaluate("document.scripts.length") == 2 + figures  # plotly, the data blocks, ours
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    # every <svg> is plotly's: its charts and its hidden text-measuring element
    assert page.evaluate("Array.from(document.querySelectorAll('svg'))"
                         ".every(s => s.closest('.js-plotly-plot') || s.id === 'js-plotly-tester')")
    assert page.locator("h1").count() == 1

    text = page.inner_text("body")
    for hostile in (HOSTILE[0], HOSTILE[1], HOSTILE[3]):  # run.json values and a race's names: shown as text
        assert hostile in text
    assert "rank-0 <img src=x onerror=alert(6)>.trace.json" in text
    assert "ncclDevKernel_<svg onload=alert(5)>" in page.inner_text("#kernels-table")

    # plotly draws the names in hover boxes as text too
    page.evaluate("Plotly.Fx.hover('timeline-rank-0', [{curveNumber: 0, pointNumber: 0}])")
    hover = page.locator("#timeline-rank-0 .hoverlayer").text_content()
    assert HOSTILE[0] in hover
    assert_clean(opened, path)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-hostile.png"), full_page=True)
    page.close()


def test_aggregated_lanes_render(browser, tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "DETAIL_LIMIT", 2)
    trace = load([tbo_run(tmp_path / "run", overlapped=True, ranks=1)])
    path = write_html(rp.build_report(trace, ["tbo"]), tmp_path / "binned.html")
    opened = open_report(browser, path)
    assert_timelines_drawn(opened.page, [0])
    assert "Aggregated lanes" in opened.page.inner_text("#decimation")
    fills = opened.page.evaluate(
        "document.getElementById('timeline-rank-0').data.filter(t => t.fill === 'toself').length")
    assert fills >= 3
    assert_clean(opened, path)
    opened.page.close()
