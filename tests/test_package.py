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
    for sym in mod.__all__: assert hasattr(mod, sym), f"{name}.__all__ names {sym!r}, which does not exist"


def test_wheel_installs_and_imports_outside_the_repo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("nomic_repro-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nomic_repro/rope.py" in names and "nomic_repro/ntk.py" in names
    assert "nomic_repro/assets/bert-base-uncased/vocab.txt" in names and "nomic_repro/assets/bert-base-uncased/SOURCE.md" in names
    assert not any(n.startswith(("nbs/", "tests/", "kernels/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for dep in ("torch", "triton", "transformers", "safetensors", "einops"): assert f"Requires-Dist: {dep}" in meta
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import nomic_repro, nomic_repro.rope, nomic_repro.ntk, nomic_repro.checkpoint as c; print(nomic_repro.__file__); "
            "print(nomic_repro.ntk.dynamic_ntk_base(8192)); assert c.load_tokenizer()('hello')['input_ids'] == [101, 7592, 102]")
    # -s: no user site; the editable install of the repo is hidden because PYTHONPATH comes first and cwd is elsewhere
    out = subprocess.run([sys.executable, "-s", "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    path, base = out.split()
    assert path.startswith(str(target)), path
    assert abs(float(base) - 7453.5) < 1


@pytest.mark.parametrize("nb", ["01_rope.ipynb"])
def test_notebook_runs_in_a_real_jupyter_kernel(nb):
    nbformat = pytest.importorskip("nbformat"); nbclient = pytest.importorskip("nbclient")
    book = nbformat.read(ROOT / "nbs" / nb, as_version=4)
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "nbs")}})
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert any(o.output_type in ("execute_result", "display_data") for c in book.cells for o in c.get("outputs", []))
