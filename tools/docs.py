"""Render the executed course as a static site that reads offline: `make docs`.

    python tools/docs.py [--executed DIR] [--out DIR] [--workers N] [--timeout S] [--no-run]

One page per notebook of nbs/ with its outputs (nbconvert's JupyterLab template, code highlighted by pygments), an
index page from nbs/index.ipynb (reading order, tracks) followed by the notebook -> module map, previous/next links,
and on the page of each notebook that exports a module its API reference: the signature and docstring of every name
in the module's `__all__`, rendered by nbdev's `show_doc`. A page of plots of kernels/results/*.csv, and the demo
run's report (runs/demo/report.html) when it exists, are linked from the index.

The executed notebooks come from `--executed` (default _site_build/executed), where `make test`'s course stage
(tools/course.py --save-dir) leaves them: a copy is used when it ran without error, has the notebook's current cells
and ran against the current package (tools/course.py's `package_hash`). Any other notebook is executed here exactly
as the course stage does it (default size, clean environment, a real kernel), so `make test` followed by
`make docs` executes nothing twice. `--no-run` renders such notebooks without outputs instead, under a banner.

Offline: nothing is loaded from the network. plotly.js is the copy the plotly wheel ships, once in assets/; the
figures' own CDN <script> tags (PLOTLY_RENDERER=notebook_connected writes them) are removed. Equations are typeset
by MathJax 3's single-file component `tex-svg-full.js` (all TeX extensions, SVG output: no font files, no lazy
loads), taken from the npm package `mathjax` with `npm pack` (no node_modules, no root) and checked against a pinned
sha256. The build fails if any page still references a remote script, stylesheet or image.
"""

import argparse, hashlib, importlib, inspect, json, os, re, shutil, subprocess, sys, tarfile, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
TEMPLATES = Path(__file__).resolve().parent / "site"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import course  # noqa: E402  (tools/course.py: the same execution as `make test`'s course stage)

BUILD = ROOT / "_site_build"
EXECUTED = BUILD / "executed"
MATHJAX = dict(
    package="mathjax",
    version="3.2.2",
    file="es5/tex-svg-full.js",
    sha256="a4354ff94fd868aea0cc6eaaa79a57fda0588646fc46ee3700a349ee0a11cbe6",
)
REPO = "https://github.com/nomic-repro/nomic_repro"
FIGURE = 'class="plotly-graph-div"'
# What PLOTLY_RENDERER=notebook_connected puts in each figure's output: plotly.js (and MathJax) from a CDN.
CDN_SCRIPT = re.compile(r'<script\b[^>]*\bsrc="(?:https?:)?//[^"]*"[^>]*>\s*</script>', re.I)
CDN_IMPORT = re.compile(
    r'<script type="module">\s*import\s+"(?:https?:)?//[^"]*"\s*;?\s*</script>', re.I
)
REMOTE = re.compile(
    r'<(?:script|link|img|iframe|source|embed)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', re.I
)


class DocsError(Exception):
    pass


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_mathjax(cache: Path = BUILD) -> Path:
    "The pinned MathJax component, fetched once with `npm pack` into `cache` and checked against its sha256."
    dest = cache / f"mathjax-{MATHJAX['version']}" / Path(MATHJAX["file"]).name
    if dest.exists() and sha256(dest) == MATHJAX["sha256"]:
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise DocsError(
            "npm not found: the site's MathJax comes from the npm package `mathjax`; install Node.js "
            "(e.g. apt-get install -y npm) and rerun `make docs`"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        spec = f"{MATHJAX['package']}@{MATHJAX['version']}"
        r = subprocess.run(
            [npm, "pack", spec, "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
        )
        tgz = Path(tmp) / f"{MATHJAX['package']}-{MATHJAX['version']}.tgz"
        if r.returncode != 0 or not tgz.exists():
            raise DocsError(f"npm pack {spec} failed: {(r.stderr or r.stdout).strip()[-300:]}")
        with tarfile.open(tgz) as t:
            data = t.extractfile(f"package/{MATHJAX['file']}").read()
        got = hashlib.sha256(data).hexdigest()
        if got != MATHJAX["sha256"]:
            raise DocsError(
                f"{spec} {MATHJAX['file']} has sha256 {got}, expected {MATHJAX['sha256']}"
            )
        part = Path(tmp) / dest.name
        part.write_bytes(data)
        os.replace(part, dest)
    return dest


def plotly_js() -> Path:
    "plotly.min.js as the installed plotly wheel ships it (the version its figures are written for)."
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise DocsError(f"{path} missing: reinstall plotly")
    return path


def pages() -> list[Path]:
    "The course's notebooks in order: index first, then by number."
    found = sorted(p for p in NBS.glob("*.ipynb") if p.stem != "index")
    return [NBS / "index.ipynb", *found]


def read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def title_of(nb, default: str) -> str:
    for c in nb.cells:
        m = re.search(r"^#\s+(.+)$", c.source, re.M) if c.cell_type == "markdown" else None
        if m:
            return m.group(1).strip()
    return default


def module_of(nb) -> str | None:
    for c in nb.cells:
        m = (
            re.search(r"^#\|\s*default_exp\s+(\S+)", c.source, re.M)
            if c.cell_type == "code"
            else None
        )
        if m:
            return f"nomic_repro.{m.group(1)}"
    return None


def cells_key(nb) -> list:
    return [(c.cell_type, c.source) for c in nb.cells]


def fresh_copy(src: Path, executed: Path, package: str):
    "The executed copy of `src` in `executed` when it ran clean, on these cells and this package; else None."
    path = executed / src.name
    if not path.exists():
        return None
    try:
        nb = read(path)
    except Exception:
        return None
    meta = nb.metadata.get("course", {})
    ok = meta.get("ok") is True and meta.get("package") == package
    return nb if ok and cells_key(nb) == cells_key(read(src)) else None


def execute(paths: list[Path], executed: Path, workers: int, timeout: int) -> list[dict]:
    "Run `paths` as `make test`'s course stage does, saving them into `executed`."
    if not paths:
        return []
    env = course.student_env(max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    print(
        f"docs: executing {len(paths)} notebook(s) with no fresh executed copy "
        f"({workers} worker(s), as the course stage does)",
        flush=True,
    )
    results = []
    with ThreadPoolExecutor(workers) as pool:
        for r in pool.map(lambda p: course.run_one(p, env, timeout, executed), paths):
            print(
                f"  {r['name']:34} {r['wall']:7.1f} s  {'FAILED' if r['error'] else 'ok'}",
                flush=True,
            )
            if r["error"]:
                print(f"    {r['error']}", flush=True)
            results.append(r)
    return results


def localize(nb) -> int:
    "Remove the CDN <script> tags from `nb`'s HTML outputs (in place); return its number of plotly figures."
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" not in data:
                continue
            h = (
                data["text/html"]
                if isinstance(data["text/html"], str)
                else "".join(data["text/html"])
            )
            n += h.count(FIGURE)
            data["text/html"] = CDN_IMPORT.sub("", CDN_SCRIPT.sub("", h))
    return n


def figures_in(nb) -> int:
    "Plotly figures among `nb`'s outputs (the count the browser test expects on its page)."
    return sum(
        (
            "".join(o["data"]["text/html"])
            if isinstance(o["data"]["text/html"], list)
            else o["data"]["text/html"]
        ).count(FIGURE)
        for c in nb.cells
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    )


def _source_link(md: str, obj) -> str:
    "nbdev's source link without its Quarto attributes, pointing at the definition's line."
    try:
        line = inspect.getsourcelines(inspect.unwrap(obj))[1]
    except (TypeError, OSError):
        line = None
    md = re.sub(r"(\[source\]\([^)]*\))\{[^}]*\}", r"\1", md)
    return md.replace("#LNone", f"#L{line}" if line else "")


def api_markdown(modname: str) -> str:
    "The module's API reference: every name of its `__all__`, as nbdev's show_doc renders it."
    from nbdev.showdoc import show_doc

    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if not names:
        return ""
    parts = [
        f'<a id="api-reference"></a>\n\n## API reference: `{modname}`\n\n'
        f"The {len(names)} names `{modname}` exports (its `__all__`), with signature and docstring as "
        f"nbdev's `show_doc` renders them; the source links point at the repository."
    ]
    for name in names:
        obj = getattr(mod, name)
        if not callable(obj):
            r = repr(obj)
            r = r if len(r) <= 300 else r[:300] + " ..."
            parts.append(f"---\n\n### {name}\n\n```python\n{name}: {type(obj).__name__} = {r}\n```")
            continue
        parts.append(_source_link(show_doc(obj, name=name)._repr_markdown_(), obj))
        if inspect.isclass(obj):
            for k, v in vars(obj).items():
                f = v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
                if k.startswith("_") or not inspect.isfunction(f):
                    continue
                parts.append(
                    _source_link(
                        show_doc(f, name=f"{name}.{k}", title_level=4)._repr_markdown_(), f
                    )
                )
    return "\n\n".join(parts)


def kernels_notebook():
    "A notebook of the benchmark CSVs: kernels/README.md, then per CSV its plot (the report's) and its table."
    import nbformat.v4 as v4
    from nomic_repro.report import kernel_plot, kernel_results

    folder = ROOT / "kernels" / "results"
    readme = ROOT / "kernels" / "README.md"
    cells = [
        v4.new_markdown_cell(readme.read_text() if readme.exists() else "# Kernel benchmarks"),
        v4.new_markdown_cell(
            "The CSVs of `kernels/results/`, each plotted by `nomic_repro.report.kernel_plot` "
            "(the same plots as a run's report) and listed in full."
        ),
    ]
    for i, (name, rows) in enumerate(kernel_results(folder).items()):
        cells.append(v4.new_markdown_cell(f"## {name}\n\n[{name}.csv](kernels/{name}.csv)"))
        fig = kernel_plot(name, rows)
        code = v4.new_code_cell(
            f"kernel_plot({name!r}, kernel_results()[{name!r}])", execution_count=i + 1
        )
        if fig is not None:
            code.outputs = [
                v4.new_output(
                    "display_data",
                    data={"text/html": fig.to_html(full_html=False, include_plotlyjs=False)},
                )
            ]
        cells.append(code)
        if rows:
            head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0])
            body = "\n".join(
                "| " + " | ".join(v.replace("|", "\\|") for v in r.values()) + " |" for r in rows
            )
            cells.append(v4.new_markdown_cell(head + "\n" + body))
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def link_pages(page: str) -> str:
    "Links between notebooks point at their pages."
    return re.sub(
        r'href="([\w.-]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{m[1]}.html{m[2] or ""}"', page
    )


def git_commit() -> str:
    try:
        r = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return r.stdout.strip() or "unknown"


def exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="course", extra_template_basedirs=[str(TEMPLATES)])


def lab_css(exp) -> str:
    "nbconvert's JupyterLab stylesheets (index.css and the light theme), once for the whole site."
    for d in map(Path, exp.template_paths):
        if (d / "static" / "index.css").exists() and (d / "static" / "theme-light.css").exists():
            return (
                (d / "static" / "index.css").read_text()
                + "\n"
                + (d / "static" / "theme-light.css").read_text()
            )
    raise DocsError("nbconvert's lab template (static/index.css) not found: reinstall nbconvert")


def index_extra(entries: list[dict], report: bool) -> str:
    "The index's generated part: every page with its module and API reference, the benchmarks, the report."
    rows = [
        f"| [{e['stem']}]({e['href']}) | {e['title']} | "
        + (f"[`{e['module']}`]({e['href']}#api-reference)" if e["module"] else "–")
        + f" | {e['figures']} | {e['state']} |"
        for e in entries
    ]
    rep = (
        "[The demo run's report](report.html): `make demo`'s three stages, evaluation and kernel plots"
        if report
        else "The demo run's report is not part of this build: run `make demo`, then `make docs`."
    )
    return "\n".join(
        [
            "## This site",
            "",
            "Every notebook, executed, with its outputs; each page ends with the API reference of the module its "
            "notebook exports. Built by `make docs`; it reads offline (plotly.js and MathJax are in `assets/`).",
            "",
            "| page | title | module (API reference) | figures | outputs |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "## Benchmarks and the demo run",
            "",
            "- [Kernel benchmarks](kernels.html): plots and tables of `kernels/results/*.csv`.",
            f"- {rep}",
        ]
    )


def build(
    executed: Path = EXECUTED,
    out: Path = ROOT / "_site",
    run: bool = True,
    workers: int = 1,
    timeout: int = 900,
) -> dict:
    "Build the site into `out`; return a summary (pages, figures per page, executed, seconds, bytes)."
    t0 = time.time()
    executed, out = Path(executed), Path(out)
    package = course.package_hash()
    srcs = pages()
    stale = [
        p for p in srcs if not course.skip_exec(p) and fresh_copy(p, executed, package) is None
    ]
    ran = execute(stale, executed, workers, timeout) if run else []
    failed = [r["name"] for r in ran if r["error"]]
    if failed:
        raise DocsError(f"notebook(s) failed, the site is not built: {', '.join(failed)}")
    t_exec = time.time() - t0
    exp = exporter()
    tmp_out = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp_out, ignore_errors=True)
    (tmp_out / "assets" / "mathjax").mkdir(parents=True)
    shutil.copy(ensure_mathjax(), tmp_out / "assets" / "mathjax" / "tex-svg-full.js")
    shutil.copy(plotly_js(), tmp_out / "assets" / "plotly.min.js")
    (tmp_out / "assets" / "lab.css").write_text(lab_css(exp))
    shutil.copy(TEMPLATES / "site.css", tmp_out / "assets" / "site.css")
    entries = []
    for src in srcs:
        nb = fresh_copy(src, executed, package)
        if nb is not None:
            state = "executed"
        elif course.skip_exec(src):
            state, nb = "not run (GPUs)", read(src)
        else:
            state, nb = "not executed", read(src)
        entries.append(
            dict(
                src=src,
                nb=nb,
                stem=src.stem,
                href=f"{src.stem}.html",
                state=state,
                title=title_of(nb, src.stem),
                module=module_of(nb),
                figures=figures_in(nb),
            )
        )
    report = ROOT / "runs" / "demo" / "report.html"
    kernels = dict(
        src=None,
        nb=kernels_notebook(),
        stem="kernels",
        href="kernels.html",
        state="generated",
        title="Kernel benchmarks",
        module=None,
    )
    kernels["figures"] = figures_in(kernels["nb"])
    seq = entries + [kernels]
    footer = (
        f"Built by <code>make docs</code> on {date.today().isoformat()} from commit {git_commit()} of "
        f'<a href="{REPO}">{REPO.split("github.com/")[-1]}</a>.'
    )
    for i, e in enumerate(seq):
        nb = e["nb"]
        if nb.cells and nb.cells[0].cell_type == "raw" and nb.cells[0].source.startswith("---"):
            nb.cells = nb.cells[1:]  # nbdev's front matter (skip_exec: true) is not prose
        for j, c in enumerate(nb.cells):
            c["id"] = c.get("id") or f"cell-{j}"  # index.ipynb has a null id
        assert localize(nb) == e["figures"]
        if e["module"]:
            md = api_markdown(e["module"])
            if md:
                nb.cells.append(_md_cell(md))
        if e["stem"] == "index":
            nb.cells.append(_md_cell(index_extra(entries[1:], report.exists())))
        banner = {
            "not executed": "Shown without outputs: this build found no fresh executed copy "
            "(`make docs` executes it).",
            "not run (GPUs)": "Not executed by the course (it runs on rented GPUs): the code without "
            "outputs.",
        }.get(e["state"])
        nb.metadata["title"] = e["title"] if e["stem"] == "index" else f"{e['stem']}: {e['title']}"
        near = lambda j: (
            dict(name=seq[j]["stem"], href=seq[j]["href"]) if 0 <= j < len(seq) else None
        )
        site = dict(
            prev=near(i - 1), next=near(i + 1), module=e["module"], banner=banner, footer=footer
        )
        page, _ = exp.from_notebook_node(
            nb, resources={"site": site, "metadata": {"name": e["stem"]}}
        )
        page = link_pages(page)
        remote = REMOTE.findall(page)
        if remote:
            raise DocsError(f"{e['href']} would load from the network: {remote[:3]}")
        (tmp_out / e["href"]).write_text(page)
    (tmp_out / "kernels").mkdir()
    for f in sorted((ROOT / "kernels" / "results").glob("*.csv")):
        shutil.copy(f, tmp_out / "kernels" / f.name)
    if report.exists():
        shutil.copy(report, tmp_out / "report.html")
    summary = dict(
        pages={e["href"]: e["figures"] for e in seq},
        states={e["href"]: e["state"] for e in seq},
        executed=[r["name"] for r in ran],
        exec_seconds=round(t_exec, 1),
        report=report.exists(),
    )
    (tmp_out / "site.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp_out, out)
    summary["bytes"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def _md_cell(md: str):
    import nbformat.v4 as v4

    return v4.new_markdown_cell(md)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--executed", type=Path, default=EXECUTED, help="executed notebooks (default: %(default)s)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "_site")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell when executing")
    p.add_argument(
        "--no-run", action="store_true", help="render notebooks without a fresh copy unexecuted"
    )
    a = p.parse_args(argv)
    try:
        s = build(a.executed, a.out, run=not a.no_run, workers=a.workers, timeout=a.timeout)
    except DocsError as e:
        print(f"docs: {e}", file=sys.stderr)
        return 1
    n_exec = sum(st == "executed" for st in s["states"].values())
    print(
        f"docs: {len(s['pages'])} pages ({n_exec} executed notebooks, {len(s['executed'])} of them run now in "
        f"{s['exec_seconds']:.0f} s), {sum(s['pages'].values())} figures"
        + (", the demo report" if s["report"] else "")
        + f"; {s['bytes'] / 2**20:.1f} MB in {a.out}; built in {s['seconds']:.0f} s",
        flush=True,
    )
    print(f"docs: open {(a.out / 'index.html').resolve().as_uri()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
