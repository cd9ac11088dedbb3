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
from overlapscope.races.findings import Access, Finding, RaceReport
from overlapscope.renderers.format import duration, pct
from overlapscope.renderers.html import rank_label, write_html
from overlapscope.pipeline import load
from corpus import corpus_path
from run_builders import HOSTILE, T0, hostile_run, nested_run, tbo_run

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
    assert "Races found" in page.inner_text("#race-verdict")
    assert page.locator("#race-groups-table tbody tr").count() == 1

    # the race is in step 0; the page opened on the median step (1): choose step 0, click the marker's label
    page.select_option("#step-select", value=page.locator("#step-select option", has_text="ProfilerStep#0")
                       .get_attribute("value"))
    label = page.locator("#timeline-rank-0 .annotation", has_text="race 1")
    label.wait_for()
    page.locator("#timeline-rank-0").scroll_into_view_if_needed()
    label.click()
    page.wait_for_function("location.hash === '#race-1'")
    page.wait_for_function("""() => { const r = document.getElementById('race-1').getBoundingClientRect();
                                       return r.top >= 0 && r.bottom <= window.innerHeight; }""")
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


LANE_STATE = """([id, lane]) => document.getElementById(id).data
                                 .filter(t => t.y && t.y.some(v => v !== null && Math.abs(v - lane) <= 0.45))
                                 .map(t => t.fill === 'toself' ? 'bins' : t.meta === 'detail' ? 'detail' : 'spans')"""


def test_aggregated_lanes_render_and_zooming_in_draws_their_spans(browser, tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "DETAIL_LIMIT", 2)
    trace = load([tbo_run(tmp_path / "run", overlapped=True, ranks=1)])
    path = write_html(rp.build_report(trace, ["tbo"], races=RaceReport([], [])), tmp_path / "binned.html")
    opened = open_report(browser, path)
    page = opened.page
    assert_timelines_drawn(page, [0])
    assert "Aggregated lanes" in page.inner_text("#decimation")
    # the opening step holds 3 of stream 7's 9 kernels: more than 2, so still bins
    assert page.evaluate(LANE_STATE, ["timeline-rank-0", 0]) == ["bins"]
    # zoom onto the step's first kernel (5-25 µs into step 1): drawn span by span
    step1 = (T0 + 100_000 - rp._origin(trace)) / 1e3
    page.evaluate("r => Plotly.relayout('timeline-rank-0', {'xaxis.range': r})", [step1 + 4, step1 + 30])
    page.wait_for_function(f"() => ({LANE_STATE})(['timeline-rank-0', 0]).join() === 'detail'")
    n = page.evaluate("document.getElementById('timeline-rank-0').data.find(t => t.meta === 'detail' && t.y[0] === 0)"
                      ".x.filter(v => v !== null).length / 2")
    assert n == 2  # attention 5-25 µs, and the gemm 25-45 µs that starts inside the window
    assert_clean(opened, path)
    page.close()


@pytest.fixture(scope="module")
def nested_report(tmp_path_factory):
    """Three ranks of nested ranges (ranks 0 and 2 alike), with the region's report and analyze --json."""
    tmp = tmp_path_factory.mktemp("nested")
    run = nested_run(tmp / "run")
    out = tmp / "nested.html"
    result = runner.invoke(app, ["report", str(run), "--region", "^tbo/block$", "-o", str(out)])
    assert result.exit_code == 0, result.output
    analyzed = json.loads(runner.invoke(app, ["analyze", str(run), "--region", "^tbo/block$", "--json"]).stdout)
    return out, analyzed


def expected_sentence(analyzed: dict, rank: int, region: str, full_path: str) -> str:
    """The verdict of one rank, written from analyze --json's rows alone."""
    [row] = [r for r in analyzed["regions"] if r["rank"] == rank and r["region"] == region]
    steps = sum(1 for s in analyzed["region_steps"] if s["rank"] == rank and s["region"] == region and s["comm_ns"])
    [node] = [p for p in analyzed["exposed_paths"] if p["rank"] == rank and p["path"] == full_path]
    inside = full_path.split(" > ", 1)[1]  # below the region's own range
    hidden = 100 * (node["comm_ns"] - node["exposed_ns"]) / node["comm_ns"]
    return (f"{pct(row['overlap_pct'])} of the communication launched in {region} is hidden; "
            f"{duration(round(row['exposed_comm_ns'] / steps))} per step stays exposed, "
            f"{duration(round(node['exposed_ns'] / steps))} of it in {inside} ({pct(hidden)} hidden)")


def ranges_of(page, ids: list[str]) -> list[list[float]]:
    return page.evaluate("ids => ids.map(id => document.getElementById(id).layout.xaxis.range)", ids)


def test_verdict_step_selector_and_linked_zoom(browser, nested_report):
    path, analyzed = nested_report
    opened = open_report(browser, path)
    page = opened.page

    # the verdict sentences are analyze --json's numbers, one per group of ranks that read the same
    items = page.evaluate("""() => Array.from(document.querySelectorAll('#verdicts li.verdict')).map(li =>
        ({ranks: li.dataset.ranks.split(',').map(Number), text: li.innerText, values: JSON.parse(li.dataset.values)}))""")
    assert [i["ranks"] for i in items] == [[0, 2], [1]]
    for item in items:
        for v in item["values"]:
            [row] = [r for r in analyzed["regions"] if r["rank"] == v["rank"]]
            assert (v["overlap_pct"], v["comm_ns"], v["exposed_comm_ns"]) == (
                row["overlap_pct"], row["comm_ns"], row["exposed_comm_ns"])
            expected = expected_sentence(analyzed, v["rank"], "^tbo/block$", v["full_path"])
            assert item["text"] == f"{rank_label(tuple(item['ranks']))}: {expected}"
    assert items[0]["text"].endswith("8.0 µs of it in l0 > mb1 > combine (20.0 % hidden)")

    ids = [f"timeline-rank-{r}" for r in range(3)]
    assert_timelines_drawn(page, [0, 1, 2])
    view = [float(x) for x in page.get_attribute("#timelines", "data-view").split(",")]
    assert ranges_of(page, ids) == [view] * 3  # opened on the median step

    # the step selector re-ranges every timeline
    option = page.locator("#step-select option", has_text="ProfilerStep#1")
    step1 = [float(x) for x in option.get_attribute("value").split(",")]
    page.select_option("#step-select", value=option.get_attribute("value"))
    page.wait_for_function("([ids, r]) => ids.every(id => document.getElementById(id).layout.xaxis.range[0] === r[0])",
                           arg=[ids, step1])
    assert ranges_of(page, ids) == [step1] * 3

    # zoom one rank: the others follow
    zoom = [step1[0] + 10, step1[0] + 30]
    page.evaluate("r => Plotly.relayout('timeline-rank-1', {'xaxis.range': r})", zoom)
    page.wait_for_function("([ids, r]) => ids.every(id => document.getElementById(id).layout.xaxis.range[1] === r[1])",
                           arg=[ids, zoom])
    assert ranges_of(page, ids) == [zoom] * 3
    assert page.eval_on_selector("#step-select", "s => s.value") == ""  # no step matches the zoom
    # a double-click (autorange) shows the whole run on every rank
    page.evaluate("Plotly.relayout('timeline-rank-2', {'xaxis.autorange': true})")
    full = [float(x) for x in page.get_attribute("#timelines", "data-full").split(",")]
    page.wait_for_function("([ids, r]) => ids.every(id => document.getElementById(id).layout.xaxis.range[0] === r[0])",
                           arg=[ids, full])
    assert page.inner_text("#race-verdict").startswith("Not checked")
    assert_clean(opened, path)
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "report-verdict.png"), full_page=True)
    page.close()


def test_race_labels_do_not_overprint_and_link_to_their_rows(browser, tmp_path):
    trace = load([tbo_run(tmp_path / "run", overlapped=True, ranks=1, steps=1)])
    at = [T0 + 5_000 + i * 300 for i in range(6)]  # six races within 2 µs of each other
    findings = [Finding("cross-stream", "manifest", 0, f"buf{i}", Access("a", 7, t, t + 20_000, ""),
                        Access("b", 20, t + 100, t + 20_100, ""), "add a wait") for i, t in enumerate(at)]
    path = write_html(rp.build_report(trace, [], races=RaceReport(findings, [])), tmp_path / "races.html")
    opened = open_report(browser, path)
    page = opened.page
    assert_timelines_drawn(page, [0])
    labels = page.locator("#timeline-rank-0 .annotation")
    assert labels.count() == 3  # three rows of labels; the rest counted on the top one
    texts = [labels.nth(i).text_content() for i in range(3)]
    assert texts == ["race 1", "race 2", "race 3 +3"]
    boxes = [labels.nth(i).locator(".annotation-text-g").bounding_box() for i in range(3)]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                     or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
            assert apart, (a, b)
    labels.nth(1).click()
    page.wait_for_function("location.hash === '#race-2'")
    page.wait_for_function("""() => { const r = document.getElementById('race-2').getBoundingClientRect();
                                       return r.top >= 0 && r.bottom <= window.innerHeight; }""")
    assert_clean(opened, path)
    page.close()


def test_zooming_into_a_busy_lane_draws_its_spans(browser, tmp_path):
    """A real trace whose stream 7 holds 15,136 spans (corpus: HTA's trace_diff_test)."""
    trace = load([corpus_path("kineto", "hta", "trace_diff_test.json.gz")])
    report = rp.build_report(trace, [], races=RaceReport([], []))
    path = write_html(report, tmp_path / "busy.html")
    [timeline] = report.timelines
    plot = f"timeline-rank-{timeline.rank}"
    lane = [lane.label for lane in timeline.lanes].index("stream 7")
    opened = open_report(browser, path)
    page = opened.page
    assert_timelines_drawn(page, [timeline.rank])
    assert set(page.evaluate(LANE_STATE, [plot, lane])) == {"bins"}  # ~2,500 spans a step: bins
    lo, hi = page.evaluate(f"document.getElementById('{plot}').layout.xaxis.range")
    window = [lo + (hi - lo) * 0.45, lo + (hi - lo) * 0.5]
    page.evaluate("([id, r]) => Plotly.relayout(id, {'xaxis.range': r})", [plot, window])
    page.wait_for_function(f"() => ({LANE_STATE})(['{plot}', {lane}]).every(s => s === 'detail')")
    drawn_spans = page.evaluate(
        "([id, lane]) => document.getElementById(id).data.filter(t => t.meta === 'detail' && t.y[0] === lane)"
        ".reduce((n, t) => n + t.x.filter(v => v !== null).length / 2, 0)", [plot, lane])
    ops = trace.gpu_ops
    on = (ops["rank"] == timeline.rank) & (ops["stream"] == 7)
    start, end = ((ops["start"][on] - report.origin_ns) / 1e3), ((ops["end"][on] - report.origin_ns) / 1e3)
    expected = int(((start < window[1]) & (end > window[0])).sum())
    assert 0 < drawn_spans == expected <= rp.DETAIL_LIMIT
    assert_clean(opened, path)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(f"#{plot}").screenshot(path=str(ARTIFACTS / "report-detail.png"))
    page.close()
