"""The package as users get it: every public name imports, the wheel installs and imports outside the repo,
and the notebooks run in a real Jupyter kernel, as in a student's JupyterLab."""

import importlib, os, subprocess, sys, zipfile
from pathlib import Path
import pytest
from nomic_repro._modidx import d as MODIDX

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(MODIDX["syms"])


@pytest.mark.parametrize("name", MODULES)
def test_public_names_import(name):
    mod = importlib.import_module(name)
    assert getattr(mod, "__all__", None), f"{name} exports nothing"
    for sym in mod.__all__:
        assert hasattr(mod, sym), f"{name}.__all__ names {sym!r}, which does not exist"


def test_wheel_installs_and_imports_outside_the_repo(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheel = next((tmp_path / "dist").glob("nomic_repro-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nomic_repro/rope.py" in names and "nomic_repro/ntk.py" in names
    assert (
        "nomic_repro/assets/bert-base-uncased/vocab.txt" in names
        and "nomic_repro/assets/bert-base-uncased/SOURCE.md" in names
    )
    assert not any(n.startswith(("nbs/", "tests/", "kernels/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for dep in ("torch", "triton", "transformers", "safetensors", "einops"):
        assert f"Requires-Dist: {dep}" in meta
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import nomic_repro, nomic_repro.rope, nomic_repro.ntk, nomic_repro.checkpoint as c; print(nomic_repro.__file__); "
        "print(nomic_repro.ntk.dynamic_ntk_base(8192)); assert c.load_tokenizer()('hello')['input_ids'] == [101, 7592, 102]"
    )
    # -s: no user site; the editable install of the repo is hidden because PYTHONPATH comes first and cwd is elsewhere
    out = subprocess.run(
        [sys.executable, "-s", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path, base = out.split()
    assert path.startswith(str(target)), path
    assert abs(float(base) - 7453.5) < 1


def _notebook(path, *cells):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"display_name": "python3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
    return path


def _course(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "course.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_course_runs_notebooks_as_a_student_does(tmp_path):
    "tools/course.py (the `make test-course` stage): a real kernel, no test variables, flagged cells guard themselves."
    pytest.importorskip("nbclient")
    nb = _notebook(
        tmp_path / "student.ipynb",
        "import os\n"
        "assert not any(k.startswith('PYTEST_') for k in os.environ)\n"
        "assert 'IN_TEST' not in os.environ and 'TRITON_INTERPRET' not in os.environ\n"
        "import nomic_repro.core as c\n"
        "assert not c.in_test()\n"
        "c.sizes().seq_len",
        "#| slow\n# Would train for an hour.\nraise RuntimeError('a slow cell ran')",
        "#| full\n# Would load the published model.\n# needs: /no/such/model\nraise RuntimeError('ran')",
    )
    r = _course("--save-dir", tmp_path / "out", nb)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 0 failed" in r.stdout
    import nbformat

    outs = [
        o for c in nbformat.read(tmp_path / "out" / "student.ipynb", 4).cells for o in c.outputs
    ]
    assert outs[0]["data"]["text/plain"] == str(
        __import__("nomic_repro.core").core.SIZES["laptop"].seq_len
    )
    said = "".join(o.get("text", "") for o in outs)
    assert (
        "Skipped this `#| slow` cell (Would train for an hour.)" in said
        and "NOMIC_REPRO_SLOW" in said
    )
    assert (
        "Skipped this `#| full` cell (Would load the published model.)" in said
        and "/no/such/model" in said
    )


def test_course_fails_on_an_error_and_names_it(tmp_path):
    nb = _notebook(tmp_path / "broken.ipynb", "x = 1", "1 / 0", "x = 2")
    r = _course(nb)
    assert (
        r.returncode == 1 and "0 passed, 1 failed" in r.stdout and "ZeroDivisionError" in r.stdout
    ), r.stdout
