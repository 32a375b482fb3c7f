"""The rendered course (`make docs`, tools/docs.py) in headless Chromium, offline: every request that is not a file of
the site is blocked, and each page must load without a console or page error; each page shows as many rendered plotly
plots as its executed notebook has figures; on pages with equations MathJax has typeset them (its output elements are
there, no TeX error, no raw `$`/`$$` left in the prose); the index links every notebook; prev/next chain the pages;
the `#| gpu`/`#| slow`/`#| full` cells show their one-line message. Screenshots of the index, 01_rope and 14_infonce go
to tests/artifacts/.

Which executed notebooks: `make test` runs the course stage (tools/course.py --save-dir _site_build/executed) just
before pytest, so when every notebook there is fresh (ran clean, same cells, same package) the whole site is built from
them and nothing is executed twice (about 2 minutes on 2 cores: 30 s to render, the rest in Chromium). Otherwise
(pytest on its own) this test executes index, 01_rope, 07_embed (it has a `#| full` cell) and 14_infonce itself,
exactly as the course does (about 40 s), and renders the other pages without outputs: every page is still checked,
with the figures its notebook has.
"""

import json, os, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import course, docs  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SMALL = (
    "index",
    "01_rope",
    "07_embed",
    "14_infonce",
)  # what the test executes when there is no course output
FLAG = re.compile(r"^#\|.*\b(gpu|slow|full)\b", re.M)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "(site folder, build summary, the executed notebooks' folder)."
    base = tmp_path_factory.mktemp("docs")
    package = course.package_hash()
    runnable = [p for p in docs.pages() if not course.skip_exec(p)]
    if all(docs.fresh_copy(p, docs.EXECUTED, package) is not None for p in runnable):
        executed = docs.EXECUTED
    else:
        executed, env = base / "executed", course.student_env(None)
        for name in SMALL:
            r = course.run_one(docs.NBS / f"{name}.ipynb", env, 600, executed)
            assert r["error"] is None, r
    try:
        summary = docs.build(executed, base / "site", run=False)
    except docs.DocsError as e:
        if str(e).startswith("npm not found"):
            pytest.skip(str(e))
        raise
    print(
        f"\nsite: {len(summary['pages'])} pages from {executed}, {summary['bytes'] / 2**20:.1f} MB, "
        f"rendered in {summary['seconds']:.0f} s"
    )
    return base / "site", summary, executed


def expected_figures(site_dir: Path, executed: Path, page: str, state: str) -> int:
    "Plotly figures the page must show, counted from the executed notebook itself (0 for one without outputs)."
    if page == "kernels.html":
        from nomic_repro.report import kernel_plot, kernel_results

        return sum(
            kernel_plot(k, rows) is not None
            for k, rows in kernel_results(ROOT / "kernels" / "results").items()
        )
    if state != "executed":
        return 0
    nb = json.loads((executed / page.replace(".html", ".ipynb")).read_text())
    return sum(
        "".join(o["data"]["text/html"]).count('class="plotly-graph-div"')
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    )


def has_math(page: str) -> bool:
    "Does the notebook's prose (code spans removed) hold `$...$` or `$$...$$`?"
    src = docs.NBS / page.replace(".html", ".ipynb")
    if not src.exists():
        return False
    prose = [
        re.sub(r"`[^`]*`", "", "".join(c["source"]))
        for c in json.loads(src.read_text())["cells"]
        if c["cell_type"] == "markdown"
    ]
    return any(re.search(r"\$\$.+?\$\$|\$[^$\s][^$]*\$", p, re.S) for p in prose)


def open_offline(browser, site_dir: Path, page: str):
    "Load a page of the site with every other request aborted; return (page, blocked urls, console/page errors)."
    p = browser.new_page(viewport={"width": 1200, "height": 900})
    blocked, errors = [], []
    root = site_dir.resolve().as_uri() + "/"

    def route(r):
        if r.request.url.startswith(root):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    p.route("**/*", route)
    p.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    p.goto((site_dir / page).resolve().as_uri(), wait_until="load")
    return p, blocked, errors


# The prose left after typesetting: text of markdown cells outside code, pre and MathJax's own output.
PROSE_JS = """() => [...document.querySelectorAll('.jp-MarkdownCell')].map(cell => {
  const w = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT); let t = '', n;
  while ((n = w.nextNode())) if (!n.parentElement.closest('code, pre, mjx-container, script, style')) t += n.data;
  return t; }).join('\\n')"""
PLOTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(d => ({
  svg: d.querySelectorAll('.main-svg').length, traces: d.querySelectorAll('.trace, .hm, .imagelayer image').length}))"""


def test_every_page_renders_offline(site, browser):
    site_dir, summary, executed = site
    report = []
    for page, state in summary["states"].items():
        p, blocked, errors = open_offline(browser, site_dir, page)
        want = expected_figures(site_dir, executed, page, state)
        assert want == summary["pages"][page], (page, want, summary["pages"][page])
        if want:
            p.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {want}",
                timeout=30_000,
            )
        plots = p.evaluate(PLOTS_JS)
        assert len(plots) == want and all(x["svg"] >= 1 and x["traces"] >= 1 for x in plots), (
            page,
            want,
            plots,
        )
        assert p.evaluate("() => window.MathJax.startup.promise.then(() => true)")
        math = p.evaluate(
            "() => [document.querySelectorAll('mjx-container').length, "
            "document.querySelectorAll('mjx-merror').length]"
        )
        prose = p.evaluate(PROSE_JS)
        if has_math(page):
            assert math[0] > 0, (page, math)
        assert math[1] == 0, f"{page}: {math[1]} TeX error(s)"
        assert "$" not in prose, (
            f"{page}: raw TeX left: ...{prose[max(0, prose.find('$') - 80) :][:160]}..."
        )
        assert blocked == [] and errors == [], (page, blocked, errors)
        nav = p.evaluate(
            "() => [document.querySelector('a[rel=prev]')?.getAttribute('href') ?? null, "
            "document.querySelector('a[rel=next]')?.getAttribute('href') ?? null]"
        )
        report.append((page, len(plots), math[0], nav))
        if page in ("index.html", "01_rope.html", "14_infonce.html"):
            ARTIFACTS.mkdir(exist_ok=True)
            p.screenshot(
                path=str(ARTIFACTS / f"docs-{page.replace('.html', '.png')}"), full_page=True
            )
        p.close()
    order = [r[0] for r in report]
    assert order[0] == "index.html" and order[-1] == "kernels.html", order
    for i, (page, _, _, (prev, nxt)) in enumerate(report):
        assert prev == (order[i - 1] if i else None) and nxt == (
            order[i + 1] if i + 1 < len(order) else None
        ), page
    print("\n" + "\n".join(f"  {pg:28} {n} plot(s), {m} equation(s)" for pg, n, m, _ in report))


def test_index_links_every_notebook_and_the_benchmarks(site):
    site_dir, summary, _ = site
    html = (site_dir / "index.html").read_text()
    links = set(re.findall(r'href="([^"#]+)"', html))
    nbs = {p.stem for p in docs.NBS.glob("*.ipynb")} - {"index"}
    assert {f"{n}.html" for n in nbs} <= links, sorted({f"{n}.html" for n in nbs} - links)
    assert "kernels.html" in links and all((site_dir / f"{n}.html").exists() for n in nbs)
    assert (
        ("report.html" in links)
        == (ROOT / "runs" / "demo" / "report.html").exists()
        == summary["report"]
    )
    csvs = sorted(f.name for f in (ROOT / "kernels" / "results").glob("*.csv"))
    assert sorted(f.name for f in (site_dir / "kernels").glob("*.csv")) == csvs
    readme = (ROOT / "kernels" / "README.md").read_text()
    tables = len(re.findall(r"^\|[-|: ]+\|$", readme, re.M)) + len(
        csvs
    )  # the README's, then one per CSV
    assert (site_dir / "kernels.html").read_text().count("<table") == tables


def test_api_reference_on_the_exporting_page(site):
    "Every name of every module's __all__ has its show_doc entry on the page of the notebook that exports it."
    import importlib

    site_dir, _, _ = site
    for src in docs.pages():
        mod = docs.module_of(docs.read(src))
        if mod is None:
            continue
        html = (site_dir / f"{src.stem}.html").read_text()
        assert 'id="api-reference"' in html, src.stem
        api = html[html.index('id="api-reference"') :]
        missing = [
            n
            for n in importlib.import_module(mod).__all__
            if not re.search(rf'<h3 id="{re.escape(n)}"', api)
        ]
        assert not missing, (src.stem, missing)


def test_flagged_cells_show_their_one_line_message(site):
    site_dir, summary, executed = site
    shown = 0
    for page, state in summary["states"].items():
        if state != "executed":
            continue
        nb = json.loads((executed / page.replace(".html", ".ipynb")).read_text())
        html = (site_dir / page).read_text()
        for c in nb["cells"]:
            if c["cell_type"] != "code" or not FLAG.search("".join(c["source"])):
                continue
            outs = c.get("outputs", [])
            assert not any(o["output_type"] == "error" for o in outs), page
            text = "".join("".join(o.get("text", "")) for o in outs if o["output_type"] == "stream")
            if text.startswith("Skipped this `#| "):
                assert text.count("\n") <= 1, (page, text)
                assert shown_in(html, text.strip()), (page, text)
                shown += 1
    import torch

    assert shown >= 1 or torch.cuda.is_available(), "no flagged cell printed its message"


def shown_in(html: str, line: str) -> bool:
    import html as h

    return h.escape(line, quote=False) in html or line in h.unescape(html)


def test_figures_lose_their_cdn_scripts(site):
    "The executed outputs reference plotly's CDN (notebook_connected); the pages do not, and load plotly.js once."
    site_dir, summary, executed = site
    nb = json.loads((executed / "01_rope.ipynb").read_text())
    raw = "".join(
        "".join(o["data"]["text/html"])
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    )
    assert "cdn.plot.ly" in raw
    html = (site_dir / "01_rope.html").read_text()
    assert (
        "cdn.plot.ly" not in html
        and "cdnjs" not in html
        and html.count('src="assets/plotly.min.js"') == 1
    )
    assert (site_dir / "assets" / "plotly.min.js").exists() and (
        site_dir / "assets/mathjax/tex-svg-full.js"
    ).exists()


def test_only_fresh_executed_copies_are_rendered(tmp_path):
    "A saved copy counts only when it ran clean, on the notebook's current cells, against the current package."
    import nbformat, nbformat.v4 as v4

    src = tmp_path / "lesson.ipynb"
    nbformat.write(
        v4.new_notebook(cells=[v4.new_markdown_cell("# A lesson"), v4.new_code_cell("1 / 0")]), src
    )
    executed, package = tmp_path / "executed", course.package_hash()
    r = course.run_one(src, course.student_env(None), 120, executed)  # fails: saved, marked not ok
    assert r["error"] and "ZeroDivisionError" in r["error"]
    assert (
        read_meta(executed / src.name)["ok"] is False
        and docs.fresh_copy(src, executed, package) is None
    )
    nb = nbformat.read(src, 4)
    nb.cells[1].source = "6 * 7"
    nbformat.write(nb, src)
    r = course.run_one(src, course.student_env(None), 120, executed)
    meta = read_meta(executed / src.name)
    assert r["error"] is None and meta["ok"] is True and meta["package"] == package
    fresh = docs.fresh_copy(src, executed, package)
    assert fresh is not None and fresh.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert docs.fresh_copy(src, executed, "another package") is None
    nb.cells[0].source = "# A lesson, edited"
    nbformat.write(nb, src)
    assert docs.fresh_copy(src, executed, package) is None


def read_meta(path: Path) -> dict:
    return json.loads(path.read_text())["metadata"]["course"]
