"""Train on your own data (#28): each accepted shape and file type through the real command line
(`nomic_repro.cli.main`, what the `nomic-repro` script runs), on small files the test writes, from a
tiny stage-1 model; bad rows counted and the threshold enforced; sources from a config file; a
folder read through `datasets.load_dataset` as a hub id is (no network)."""

import gzip, json, os, subprocess, sys
from pathlib import Path
import pytest
import nomic_repro  # noqa: F401  (first: Triton's CPU interpreter before triton is imported)
import pandas as pd
from _cli import cli, write_beir
from nomic_repro.data import read_source

N = 48
TOPICS = ["volcano lava", "violin concerto", "glacier ice", "sourdough bread", "rocket orbit"]
ROWS = [
    (
        f"what about {TOPICS[i % 5]} number {i}?",
        f"{TOPICS[i % 5]} fact {i}: the {i}th note on {TOPICS[i % 5]}",
        [f"{TOPICS[(i + 1) % 5]} fact {i}", f"{TOPICS[(i + 2) % 5]} fact {i}"],
    )
    for i in range(N)
]
FAST = ["--set", "train.max_steps=2", "--set", "train.batch_size=8", "--set", "eval_tasks=[]"]


def contrastors(negs=True):
    return [{"query": q, "document": d, **({"negatives": n} if negs else {})} for q, d, n in ROWS]


def write(path: Path, records: list[dict]) -> Path:
    "`records` as the file type `path` names."
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if path.name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt") as f:
            f.write(lines)
    elif path.suffix == ".jsonl":
        path.write_text(lines)
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".parquet":
        pd.DataFrame(records).to_parquet(path)
    elif path.suffix == ".csv":
        pd.DataFrame(records).to_csv(path, index=False)
    return path


# (file, records, --columns or None, the shape line the run must print)
PAIR_CASES = {
    "jsonl": ("c.jsonl", contrastors(), None, "contrastors shape: query, document, negatives"),
    "jsonl.gz": ("c.jsonl.gz", contrastors(), None, "contrastors shape"),
    "json": ("c.json", contrastors(), None, "contrastors shape"),
    "parquet": ("c.parquet", contrastors(), None, "contrastors shape"),
    "csv": ("c.csv", contrastors(negs=False), None, "contrastors shape: query, document;"),
    "st-parquet": (
        "s.parquet",
        [{"anchor": q, "positive": d, "negative": n[0]} for q, d, n in ROWS],
        None,
        "sentence-transformers shape: anchor, positive, negative",
    ),
    "st-numbered-jsonl": (
        "s.jsonl",
        [{"anchor": q, "positive": d, "negative_1": n[0], "negative_2": n[1]} for q, d, n in ROWS],
        None,
        "sentence-transformers shape: anchor, positive, negative_1, negative_2",
    ),
    "two-columns-csv": (
        "qa.csv",
        [{"id": i, "question": q, "answer": d} for i, (q, d, _) in enumerate(ROWS)],
        "question,answer",
        "columns shape: question, answer",
    ),
    "hub-like-folder": ("folder/train.jsonl", contrastors(), None, "contrastors shape"),
}


@pytest.fixture(scope="module")
def init_model(tmp_path_factory):
    "A 1-step tiny stage-1 model to start stages 2 and 3 from."
    out = tmp_path_factory.mktemp("init") / "s1"
    rc, _, err = cli("mlm", "--output-dir", out, *FAST[:4], "--set", "data.limit_docs=64")
    assert rc == 0, err
    return out / "model"


@pytest.mark.parametrize("case", PAIR_CASES)
def test_every_shape_and_file_type_reads_the_same_pairs(tmp_path, case):
    name, records, cols, said = PAIR_CASES[case]
    path = write(tmp_path / name, records)
    source = path.parent if case == "hub-like-folder" else path
    rows, stats, shape = read_source(source, "pairs", cols and cols.split(","))
    assert rows == [(q, d) for q, d, _ in ROWS] and stats.kept == N
    assert said.rstrip(";") == str(shape) or str(shape).startswith(said)


@pytest.mark.parametrize("case", PAIR_CASES)
def test_contrastive_on_your_file(init_model, tmp_path, case):
    name, records, cols, said = PAIR_CASES[case]
    path = write(tmp_path / name, records)
    source = path.parent if case == "hub-like-folder" else path
    args = ["--data", f"mine={source}:search_query,search_document"]
    args += ["--columns", cols] if cols else []
    out = tmp_path / "run"
    # the first run reads the file: a consistency filter would need the MiniLM model, skipped
    filt = ["--set", "data.filter_model=null"]
    rc, _, err = cli("contrastive", "--init", init_model, "--output-dir", out, *args, *FAST, *filt)
    assert rc == 0, err
    assert f"mine: {source}: {said}" in err  # the shape, said in one line
    report = json.loads((out / "data_report.json").read_text())["mine"]
    assert (report["pairs"], report["kept"]) == (N, N)
    preset = json.loads((out / "preset.json").read_text())
    assert preset["data"]["sources"] == [
        {
            "name": "mine",
            "path": str(source),
            "query_task": "search_query",
            "doc_task": "search_document",
            "columns": cols.split(",") if cols else None,
        }
    ]
    assert str(source) in json.loads((out / "data.json").read_text())["sources"]
    assert (out / "model" / "config.json").is_file()


def test_a_relative_path_is_recorded_absolute_and_resumes(init_model, tmp_path, monkeypatch):
    write(tmp_path / "pairs.jsonl", contrastors())
    monkeypatch.chdir(tmp_path)
    argv = ["contrastive", "--init", init_model, "--output-dir", "run", "--data", "qa=pairs.jsonl"]
    argv += [*FAST, "--set", "data.filter_model=null", "--max-steps", "1"]
    assert cli(*argv)[0] == 0
    sources = json.loads(Path("run/preset.json").read_text())["data"]["sources"]
    assert sources[0]["path"] == str(tmp_path / "pairs.jsonl")
    rc, out, err = cli(*argv[:-2])  # resumes to the end
    assert rc == 0 and json.loads(out)["start_step"] == 1, err


def test_finetune_trains_on_given_negatives_and_mines_the_rest(init_model, tmp_path):
    given = write(tmp_path / "s.csv", PAIR_CASES["st-numbered-jsonl"][1])
    plain = write(tmp_path / "qa.jsonl", contrastors(negs=False))
    out = tmp_path / "ft"
    sizes = ["--set", "data.n_negatives=2", "--set", "data.mine_top_k=3"]
    sizes += ["--set", "data.mine_max_length=32", "--set", "data.limit=null"]
    rc, _, err = cli(
        "finetune", "--init", init_model, "--output-dir", out,
        "--data", f"given={given}", "--data", f"plain={plain}", *FAST, *sizes,
    )  # fmt: skip
    assert rc == 0, err
    assert "negatives: given" in err and "negatives: mined" in err
    with gzip.open(out / "mined-given.jsonl.gz", "rt") as f:
        cached = [json.loads(line) for line in f]
    assert [c["negatives"] for c in cached] == [n for *_, n in ROWS]  # the file's own
    with gzip.open(out / "mined-plain.jsonl.gz", "rt") as f:
        mined = [json.loads(line) for line in f]
    assert all(len(m["negatives"]) >= 2 and m["document"] not in m["negatives"] for m in mined)
    # the result is served by `embed` and loaded by sentence-transformers, as every stage's model/
    from sentence_transformers import SentenceTransformer

    rc, _, err = cli(
        "embed", "--model", out / "model", "--text", ROWS[0][0], "--output", out / "q.npy"
    )
    assert rc == 0, err
    st = SentenceTransformer(str(out / "model"), device="cpu")
    assert st.encode([ROWS[0][0]]).shape == (1, st.get_embedding_dimension())


@pytest.mark.parametrize(
    "name,records,cols",
    [
        ("corpus.txt", None, None),
        ("corpus.jsonl.gz", [{"text": d} for _, d, _ in ROWS], None),
        ("corpus.csv", [{"id": i, "body": d} for i, (_, d, _) in enumerate(ROWS)], "body"),
    ],
)
def test_mlm_on_your_corpus(tmp_path, name, records, cols):
    path = tmp_path / name
    if records is None:
        path.write_text("".join(d + "\n\n" for _, d, _ in ROWS))  # blank lines are no rows
    else:
        write(path, records)
    argv = ["mlm", "--output-dir", tmp_path / "s1", "--data", path, *FAST[:4]]
    rc, _, err = cli(*argv, *(["--columns", cols] if cols else []))
    assert rc == 0, err
    assert f"{path}: " in err and f"kept {N}, skipped" in err
    assert json.loads((tmp_path / "s1" / "preset.json").read_text())["data"]["sources"] == [
        str(path)
    ]


def test_bad_rows_are_counted_and_the_threshold_enforced(init_model, tmp_path):
    good = contrastors(negs=False) * 21  # 1,008 rows
    path = tmp_path / "p.jsonl"
    argv = ["contrastive", "--init", init_model, "--data", f"qa={path}", *FAST]
    argv += ["--set", "data.filter_model=null"]
    # one bad row in 1,009: within 0.1%, skipped and counted
    write(path, good[:500] + [{"query": "q", "document": "  "}] + good[500:])
    rc, _, err = cli(*argv, "--output-dir", tmp_path / "a")
    assert rc == 0 and "kept 1,008, skipped 1 {'empty': 1}" in err, err
    assert "(first: p.jsonl line 501: field 'document' is empty)" in err
    # three: refused before training, in one line naming the file, line and field
    path.write_text(path.read_text() + '{"query": "q"}\nnot json\n')
    rc, _, err = cli(*argv, "--output-dir", tmp_path / "b")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "3 of 1,011 rows are bad (0.30% > max_bad_rows 0.10%)" in err
    assert "first: p.jsonl line 501: field 'document' is empty" in err
    assert not (tmp_path / "b" / "metrics.jsonl").exists()
    rc, _, err = cli(*argv, "--output-dir", tmp_path / "b", "--max-bad-rows", "0.5%")
    assert rc == 0 and "skipped 3" in err, err


def test_sources_from_a_config_file(init_model, tmp_path):
    write(tmp_path / "a.jsonl", contrastors())
    write(tmp_path / "b.csv", PAIR_CASES["two-columns-csv"][1])
    (tmp_path / "c.yaml").write_text(
        "data:\n  filter_model: null\n  sources:\n"
        f"    - a={tmp_path / 'a.jsonl'}:classification,classification\n"
        f"    - {{name: b, path: {tmp_path / 'b.csv'}, columns: [question, answer]}}\n"
    )
    out = tmp_path / "run"
    argv = [
        "contrastive",
        "--init",
        init_model,
        "--output-dir",
        out,
        "--config",
        tmp_path / "c.yaml",
    ]
    rc, _, err = cli(*argv, *FAST)
    assert rc == 0, err
    srcs = json.loads((out / "preset.json").read_text())["data"]["sources"]
    assert [(s["name"], s["query_task"], s["columns"]) for s in srcs] == [
        ("a", "classification", None),
        ("b", "search_query", ["question", "answer"]),
    ]


def test_mistakes_are_one_line(init_model, tmp_path):
    write(tmp_path / "qa.csv", PAIR_CASES["two-columns-csv"][1])
    base = ["contrastive", "--init", init_model, "--output-dir", tmp_path / "o"]
    for extra, says in [
        (["--data", "qa.csv"], "must look like NAME=SOURCE"),
        (["--data", f"qa={tmp_path}/qa.csv:query,doc"], "query_task 'query': use one of"),
        (["--data", f"qa={tmp_path}/nope.jsonl"], "not found"),
        (["--data", f"qa={tmp_path}/qa.csv"], "match no known shape"),
        (["--data", f"qa={tmp_path}/qa.csv", "--columns", "q,a"], "columns ['q', 'a'] not found"),
        (["--columns", "q,a"], "give --data too"),
    ]:
        rc, _, err = cli(*base, *extra, *FAST)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and says in err, (extra, err)


def test_an_unreachable_hub_id_is_one_line(init_model, tmp_path):
    "A bare OWNER/NAME that is no local path is read as a hub dataset; offline that fails clearly."
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    argv = [sys.executable, "-m", "nomic_repro.cli", "contrastive", "--init", str(init_model)]
    argv += ["--output-dir", str(tmp_path / "o"), "--data", "qa=someone/no-such-dataset", *FAST]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert (
        "cannot read data source 'hf:someone/no-such-dataset'" in p.stderr.strip().splitlines()[-1]
    )


def test_the_one_documented_command(tmp_path):
    """#28's "done when": a jsonl of (query, document, negatives), a published-layout model (Nomic's
    layout, named like nomic-embed-text-v1.5) and a BEIR dev folder: one `finetune` command fine-tunes
    it on the file's own negatives and scores the dev set before and after."""
    from nomic_repro import eval as ev
    from nomic_repro.checkpoint import save_pretrained
    from nomic_repro.core import seed_everything
    from nomic_repro.model import NomicBert, NomicBertConfig

    seed_everything(0)
    cfg = NomicBertConfig(hidden_size=128, num_layers=1, num_heads=2, intermediate_size=128)
    init = save_pretrained(NomicBert(cfg), tmp_path / "nomic-embed-text-v1.5", layout="nomic")
    pairs, dev, out = (
        write(tmp_path / "pairs.jsonl", contrastors()),
        tmp_path / "dev",
        tmp_path / "ft",
    )
    write_beir(dev)
    try:
        rc, stdout, err = cli(
            "finetune", "--init", init, "--output-dir", out, "--data", f"qa={pairs}",
            "--eval", f"mydev={dev}", *FAST, "--set", "data.n_negatives=2",
        )  # fmt: skip
    finally:
        ev.TASKS.pop("mydev", None)
    assert rc == 0, err
    assert "negatives: given" in err
    assert "| mydev | ndcg@10 |" in stdout  # before, after, change
    preset = json.loads((out / "preset.json").read_text())
    assert (preset["layer_norm"], preset["matryoshka_dims"]) == (True, [128, 64])  # as v1.5
    before = json.loads((out / "eval-before.json").read_text())
    after = json.loads((out / "eval.json").read_text())
    assert [r["task"] for r in before] == ["mydev"] and "mydev" in [r["task"] for r in after]
