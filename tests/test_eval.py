"""The evaluation harness: loaders refuse or count bad input, search is exact, metrics equal a hand-written nDCG,
and mteb itself, run over our adapter on a local retrieval task, agrees with our harness."""

import gzip, hashlib, json, math, random
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nomic_repro import eval as ev
from nomic_repro.core import assert_close


def write_beir(folder, docs, queries, qrels, split="test", gz=False):
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = "".join(json.dumps({"_id": i, "title": ti, "text": t}) + "\n" for i, ti, t in docs)
    if gz:
        (folder / "corpus.jsonl.gz").write_bytes(gzip.compress(corpus.encode()))
    else:
        (folder / "corpus.jsonl").write_text(corpus)
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries)
    )
    if qrels is not None:
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
        )
    return folder


DOCS = [
    ("d1", "Rotary", "rotary position embeddings rotate queries and keys"),
    ("d2", "", "mixture of experts routes tokens"),
    ("d3", "BM25", "lexical retrieval with term frequencies"),
    ("d4", "", "contrastive learning with hard negatives"),
]
QUERIES = [("q1", "rotary embeddings"), ("q2", "experts routing"), ("q3", "no qrels for me")]


def test_beir_loader_reads_gzip_and_counts_skips(tmp_path):
    d = ev.load_beir(
        write_beir(
            tmp_path / "t",
            DOCS + [("d5", "", "  ")],
            QUERIES,
            [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d9", 1), ("zz", "d1", 1)],
            gz=True,
        )
    )
    assert set(d.corpus) == {"d1", "d2", "d3", "d4"} and set(d.queries) == {"q1", "q2"}
    assert d.skipped == {
        "docs_empty": 1,
        "qrels_unknown_query": 1,
        "queries_without_qrels": 1,
        "qrels_doc_not_in_corpus": 1,
    }
    assert d.qrels["q2"] == {"d2": 2, "d9": 1}  # a qrel outside the corpus is kept: it costs recall
    assert d.doc_texts(["d1", "d2"]) == [
        "Rotary rotary position embeddings rotate queries and keys",
        "mixture of experts routes tokens",
    ]


@pytest.mark.parametrize(
    "case, msg",
    [
        ("missing_folder", "no such task folder"),
        ("no_qrels", "no qrels for split 'test'"),
        ("dup_doc", "duplicate corpus id 'd1'"),
        ("dup_query", "duplicate queries id 'q1'"),
        ("empty_corpus", "the corpus has no documents"),
        ("no_matching_query", "no qrels row matches a query id"),
        ("no_corpus", "is not a BEIR folder"),
        ("no_matching_doc", "no qrels row names a document of corpus.jsonl"),
        (
            "bad_scores",
            "no row reads as query-id<TAB>corpus-id<TAB>integer score \\(2 malformed rows\\)",
        ),
    ],
)
def test_beir_loader_errors(tmp_path, case, msg):
    f = tmp_path / case
    if case == "no_qrels":
        write_beir(f, DOCS, QUERIES, None)
    if case == "dup_doc":
        write_beir(f, DOCS + [("d1", "", "again")], QUERIES, [("q1", "d1", 1)])
    if case == "dup_query":
        write_beir(f, DOCS, QUERIES + [("q1", "again")], [("q1", "d1", 1)])
    if case == "empty_corpus":
        write_beir(f, [], QUERIES, [("q1", "d1", 1)])
    if case == "no_matching_query":
        write_beir(f, DOCS, QUERIES, [("x", "d1", 1)])
    if case == "no_matching_doc":
        write_beir(f, DOCS, QUERIES, [("q1", "d9", 1), ("q2", "d8", 1)])
    if case == "bad_scores":
        write_beir(f, DOCS, QUERIES, [("q1", "d1", "high"), ("q2", "d2", "0.5")])
    if case == "no_corpus":
        f.mkdir()
    with pytest.raises(ev.EvalError, match=msg):
        ev.load_beir(f)


def naive_ndcg10(qrels, run):
    "Textbook nDCG@10 with linear gains (trec_eval's), ranks by descending score."
    out = []
    for q, rel in qrels.items():
        ranked = sorted(run.get(q, {}).items(), key=lambda x: -x[1])[:10]
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, (d, _) in enumerate(ranked))
        ideal = sorted((r for r in rel.values() if r > 0), reverse=True)[:10]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        out.append(dcg / idcg if idcg > 0 else 0.0)
    return sum(out) / len(out)


def naive_mrr10(qrels, run):
    out = []
    for q, rel in qrels.items():
        ranked = [d for d, _ in sorted(run.get(q, {}).items(), key=lambda x: -x[1])[:10]]
        out.append(next((1 / (i + 1) for i, d in enumerate(ranked) if rel.get(d, 0) > 0), 0.0))
    return sum(out) / len(out)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_hand_written_ones(seed):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels = {
        f"q{j}": {d: rng.choice([1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 6))}
        for j in range(20)
    }
    scores = rng.sample(range(100000), 60 * 20)  # distinct: no ties to break
    run = {
        q: {d: scores[j * 60 + i] / 1000 for i, d in enumerate(docs)}
        for j, q in enumerate(list(qrels)[:-2])
    }  # 2 queries unanswered
    m = ev.retrieval_metrics(qrels, run)
    assert abs(m["ndcg@10"] - naive_ndcg10(qrels, run)) < 1e-4
    assert abs(m["mrr@10"] - naive_mrr10(qrels, run)) < 1e-4
    assert (
        abs(m["recall@100"] - (len(qrels) - 2) / len(qrels)) < 1e-6
    )  # 60 docs retrieved: every relevant one, when answered


def test_perfect_and_worst_rankings():
    qrels = {"a": {"x": 1}, "b": {"y": 2, "z": 1}}
    perfect = {"a": {"x": 2.0, "w": 1.0}, "b": {"y": 3.0, "z": 2.0, "w": 1.0}}
    assert all(abs(v - 1) < 1e-9 for v in ev.retrieval_metrics(qrels, perfect).values())
    assert all(
        v == 0 for v in ev.retrieval_metrics(qrels, {"a": {"w": 1.0}, "b": {"w": 1.0}}).values()
    )


@pytest.mark.parametrize("chunk, q_chunk", [(1, 1), (7, 3), (64, 100), (10_000, 10_000)])
def test_dense_topk_is_exact(chunk, q_chunk):
    g = torch.Generator().manual_seed(chunk)
    Q, D = (
        F.normalize(torch.randn(23, 8, generator=g), dim=-1),
        F.normalize(torch.randn(301, 8, generator=g), dim=-1),
    )
    s_ref, i_ref = (Q @ D.T).topk(50, dim=1)
    s, i = ev.dense_topk(Q, D, 50, chunk=chunk, q_chunk=q_chunk)
    assert_close(s, s_ref)
    assert torch.equal(i, i_ref)


def test_vendored_sts_and_qmsum_parse():
    stsb = ev.load_stsb(ev.task_folder("stsb"))
    assert len(stsb.pairs) == 1379 and not stsb.skipped and all(0 <= p[2] <= 5 for p in stsb.pairs)
    assert len(ev.load_sick(ev.task_folder("sickr")).pairs) == 9840
    q = ev.load_qmsum(ev.task_folder("qmsum"))
    assert (len(q.corpus), len(q.queries)) == (272, 272)  # LoCo's rows: one document per question
    assert all(list(v) == [k.removesuffix("-answer")] for k, v in q.qrels.items())


def test_shared_data_root_if_present():
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "scifact").is_dir():
        pytest.skip("no ../shared/data next to this clone")
    a, b = ev.load_task("scifact", data_root=shared)[1], ev.load_task("scifact")[1]
    assert a.corpus == b.corpus and a.qrels == b.qrels


class HashEncoder:
    "A deterministic bag-of-words encoder (hashed unigrams): fast, no model files, and retrieval works with it."

    name = "hash-bow"

    def encode(self, texts, *, task="document", batch_size=32, max_length=None):
        out = torch.zeros(len(texts), 256)
        for r, t in enumerate(texts):
            for w in t.lower().split():
                out[r, int(hashlib.md5(w.strip(".,:;()").encode()).hexdigest(), 16) % 256] += 1
        return F.normalize(out + 1e-6, dim=-1)


def test_bm25_and_hash_encoder_on_scifact_slice():
    data = ev.subsample(ev.load_task("scifact")[1], 300, seed=3)
    assert len(data.corpus) == 300 and all(d in data.corpus for v in data.qrels.values() for d in v)
    for model, floor in (
        (ev.BM25Retriever(), 0.6),
        (HashEncoder(), 0.2),
    ):  # random ranking: about 0.02
        m = ev.evaluate_retrieval(model, data)["metrics"]
        assert floor < m["ndcg@10"] <= 1 and m["recall@100"] > floor, (model, m)


def test_mteb_runs_our_adapter_on_a_local_task_and_agrees():
    pytest.importorskip("mteb")
    mteb = ev.import_mteb_offline()
    data = ev.subsample(ev.load_task("scifact")[1], 150, seed=7)
    enc = HashEncoder()
    res = mteb.evaluate(
        ev.MTEBEncoder(enc),
        ev.local_retrieval_task(data, "SciFactSliceTest"),
        encode_kwargs={"batch_size": 64},
        overwrite_strategy="always",
        show_progress_bar=False,
    )
    scores = res.task_results[0].scores["test"][0]
    ours = ev.evaluate_retrieval(enc, data)["metrics"]
    assert abs(scores["ndcg_at_10"] - ours["ndcg@10"]) < 1e-3, (
        scores["ndcg_at_10"],
        ours["ndcg@10"],
    )
    assert abs(scores["recall_at_100"] - ours["recall@100"]) < 1e-3
    assert abs(scores["map_at_100"] - ours["map@100"]) < 1e-3
    assert abs(scores["mrr_at_10"] - ours["mrr@10"]) < 1e-3
