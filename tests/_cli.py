"""What the command-line tests share: the real `nomic-repro` entry point run in this process with its
output captured, and a small BEIR folder to register as an evaluation task."""

import contextlib, io, json
import nomic_repro  # noqa: F401  (first: Triton's CPU interpreter before triton is imported)
from nomic_repro.cli import main

TOPICS = [
    "volcano lava eruption magma",
    "violin orchestra concerto strings",
    "glacier ice melting arctic",
    "bakery sourdough bread yeast",
    "satellite orbit rocket launch",
    "honeybee hive pollen colony",
    "chess opening gambit endgame",
    "coral reef ocean fish",
]


def cli(*argv) -> tuple[int, str, str]:
    "`nomic-repro ARGV` (`nomic_repro.cli.main`): exit code, stdout, stderr."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def write_beir(folder):
    """A small BEIR folder: 8 topics x 4 documents sharing the topic's words, one query per topic
    (its first word), relevant: the topic's first document. Hard enough for a tiny model."""
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {"_id": f"d{t}-{k}", "title": "", "text": f"{w} note {k}: " + " ".join(w.split()[k:][::-1])}
        for t, w in enumerate(TOPICS)
        for k in range(4)
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{t}", "text": w.split()[0] + " facts"} for t, w in enumerate(TOPICS)]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    rows = "".join(f"q{t}\td{t}-0\t1\n" for t in range(len(TOPICS)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder
