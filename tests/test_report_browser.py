"""report.html in a real browser (headless Debian chromium through playwright), offline: every plotly figure of the
page renders with its traces, with every network request blocked (plotly.js is embedded), and without a console or
page error. Saves a screenshot. `NOMIC_REPRO_REPORT=runs/demo/report.html pytest tests/test_report_browser.py` checks
another run's report instead of the shared test-size run's."""

import json, os, re, shutil
from pathlib import Path
import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def open_offline(browser, html: Path):
    "Load `html` with every request but the file itself aborted; return (page, blocked urls, console errors, page errors)."
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    blocked, console, errors = [], [], []
    url = html.resolve().as_uri()

    def block(route):
        if route.request.url == url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", block)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")
    return page, blocked, console, errors


@pytest.fixture(scope="module")
def report(request):
    if os.environ.get("NOMIC_REPRO_REPORT"):
        return Path(os.environ["NOMIC_REPRO_REPORT"])
    return request.getfixturevalue("tiny_run").out / "report.html"


def test_report_renders_offline_in_chromium(browser, report):
    html = report.read_text()
    n_figs = len(re.findall(r'class="plotly-graph-div"', html))
    n_traces = sum(
        1 for s in ("stage1", "stage2", "stage3") if (report.parent / s / "metrics.jsonl").exists()
    )
    rep = json.loads((report.parent / "report.json").read_text())
    assert (
        n_figs >= 1 + bool(rep.get("long_context")) and n_traces >= 1
    )  # loss curves, long context, kernel plots
    page, blocked, console, errors = open_offline(browser, report)
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figs}", timeout=20_000
    )
    rendered = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(d => ({
        svg: d.querySelectorAll('.main-svg').length, traces: d.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length,
        marks: d.querySelectorAll('.scatterlayer path.js-line, .barlayer .point path').length}))""")
    assert len(rendered) == n_figs and all(
        r["svg"] >= 1 and r["traces"] >= 1 and r["marks"] >= 1 for r in rendered
    ), rendered
    assert rendered[0]["traces"] == n_traces, rendered  # the first figure: one loss curve per stage
    if rep.get("long_context"):
        assert rendered[1]["traces"] == len({r["model"] for r in rep["long_context"]}), rendered
    rows = (
        page.locator("table").first.locator("tr").count()
    )  # the evaluation table (then the versions)
    assert rows == 1 + len(rep["evaluation"]), rows
    assert errors == [] and console == [], (errors, console)
    shots = [report.parent / "report.png"]
    page.screenshot(path=str(shots[0]), full_page=True)
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shots[0], ARTIFACTS / "report.png")
        shots.append(ARTIFACTS / "report.png")
    except OSError:
        pass
    page.close()
    print(
        f"\nreport.html rendered {len(rendered)} plotly figure(s), {n_traces} loss curves, {rows - 1} evaluation rows, "
        f"offline ({len(blocked)} requests blocked), no console errors; screenshot: {', '.join(map(str, shots))}"
    )


def test_network_block_is_effective(browser, tmp_path):
    "The control: a figure that loads plotly.js from its CDN does not render under the same block."
    import plotly.graph_objects as go

    f = tmp_path / "cdn.html"
    go.Figure(go.Scatter(x=[1, 2], y=[3, 4])).write_html(f, include_plotlyjs="cdn")
    page, blocked, console, errors = open_offline(browser, f)
    page.wait_for_timeout(300)
    assert page.locator(".js-plotly-plot .main-svg").count() == 0
    assert any("cdn.plot.ly" in u for u in blocked), blocked
    page.close()
