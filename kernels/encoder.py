"""Encoder throughput: our NomicBert against transformers' NomicBertModel, and padding-aware
`encode` against naive fixed-length padding.

    python kernels/encoder.py [--layers 4] [--full] [--batch 16] [--repeats 5] \
        [--dtype fp32|bf16] [--out kernels/results]

Variants timed (same weights, same inputs, eval mode, no grad): 1. transformers.NomicBertModel on a
right-padded batch of mixed lengths (32-512 tokens), SDPA attention 2. nomic_repro.model.NomicBert,
attn_impl="torch", on the same padded batch 3. nomic_repro.model.NomicBert, attn_impl="triton"
(packed tokens, Triton flash attention), GPU only And for the embedding API, the same texts: 4. the
usual recipe: transformers' model, every batch padded to max_length (512) in input order 5. our
model with the same fixed-length padding (it unpads internally, so only attention pays for padding)
6. Embedder.encode: length-sorted batches, each padded to its own longest text

First a correctness check (ours == transformers on the batch), then timings (median of --repeats
after one warm-up), printed as tokens/s and ratios, and written to
kernels/results/encoder-<device>.csv. Default size is a 4-layer NomicBERT (768 wide) so a 2-core CPU
finishes in about a minute; --full uses all 12.
"""

import argparse, csv, os, statistics, time
from dataclasses import replace
from pathlib import Path
import torch
import nomic_repro  # noqa: F401  (before transformers: sets the Triton interpreter on CPU)
from nomic_repro.core import assert_close, seed_everything, get_device
from nomic_repro.model import NomicBert, NomicBertConfig
from nomic_repro.embed import Embedder, mean_pool
import transformers


def timeit(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev).replace(" ", "-")
    return f"cpu-{os.cpu_count()}cores"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    dev = get_device()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    cfg = NomicBertConfig() if args.full else replace(NomicBertConfig(), num_layers=args.layers)
    seed_everything(0)
    hf = transformers.NomicBertModel(
        transformers.NomicBertConfig(
            num_hidden_layers=cfg.num_layers,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        )
    ).eval()
    ours = NomicBert(cfg).eval()
    from nomic_repro.checkpoint import _hf_to_nomic

    ours.load_state_dict(_hf_to_nomic(hf.state_dict(), cfg.num_layers))
    hf, ours = hf.to(dev, dtype), ours.to(dev, dtype)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(32, 513, (args.batch,), generator=g)
    S = int(lengths.max())
    ids = torch.randint(1000, 30000, (args.batch, S), generator=g).to(dev)
    am = (torch.arange(S)[None] < lengths[:, None]).long().to(dev)
    real = int(lengths.sum())
    rows = []
    with torch.no_grad():
        m = am.bool()
        rep = assert_close(
            ours(ids, am)[m].float(),
            hf(input_ids=ids, attention_mask=am).last_hidden_state[m].float(),
            rtol=0,
            atol=1e-4 if dtype == torch.float32 else 5e-2,
        )
        print(f"correctness (ours vs transformers, real tokens): {rep}")
        t_hf = timeit(lambda: hf(input_ids=ids, attention_mask=am), args.repeats)
        t_ours = timeit(lambda: ours(ids, am), args.repeats)
        rows += [
            ("transformers NomicBertModel (padded, sdpa)", t_hf),
            ("nomic_repro NomicBert torch (padded, sdpa)", t_ours),
        ]
        if dev.type == "cuda":
            try:
                ours.attn_impl = "triton"
                rows.append(
                    (
                        "nomic_repro NomicBert triton (packed)",
                        timeit(lambda: ours(ids, am), args.repeats),
                    )
                )
            except ValueError as e:
                print(f"triton path skipped: {e}")
            ours.attn_impl = "torch"
    print(
        f"\nforward, batch {args.batch}, lengths 32-512 (padded to {S}; {real} real tokens),"
        f" {cfg.num_layers} layers, {args.dtype}, {device_name(dev)}"
    )
    for name, t in rows:
        print(
            f"  {name:48s} {t * 1e3:9.1f} ms  {real / t:10.0f} real tokens/s  {t_hf / t:5.2f}x"
            " transformers"
        )

    # the embedding API: naive fixed-length padding vs length-sorted batches
    tok = Embedder(ours).tokenizer
    texts = [
        " ".join(["word"] * int(n)) for n in torch.randint(20, 500, (4 * args.batch,), generator=g)
    ]
    emb = Embedder(ours, tok, max_length=512, device=dev)

    def naive(model, hf_style):
        def run():
            for i in range(0, len(texts), args.batch):
                b = tok(
                    texts[i : i + args.batch],
                    padding="max_length",
                    truncation=True,
                    max_length=512,
                    return_tensors="pt",
                ).to(dev)
                with torch.no_grad():
                    h = (
                        model(
                            input_ids=b["input_ids"], attention_mask=b["attention_mask"]
                        ).last_hidden_state
                        if hf_style
                        else model(b["input_ids"], b["attention_mask"])
                    )
                    mean_pool(h, b["attention_mask"])

        return run

    r = max(1, args.repeats // 2)
    t_naive_hf = timeit(naive(hf, True), r)
    t_naive = timeit(naive(ours, False), r)
    t_enc = timeit(lambda: emb.encode(texts, batch_size=args.batch), r)
    print(f"\nencode {len(texts)} texts of 20-500 words, batch {args.batch}:")
    for name, t in (
        ("transformers model, every batch padded to 512", t_naive_hf),
        ("our model, every batch padded to 512", t_naive),
        ("Embedder.encode (length-sorted batches)", t_enc),
    ):
        print(
            f"  {name:48s} {t:8.2f} s  ({len(texts) / t:7.1f} texts/s)  {t_naive_hf / t:5.2f}x the"
            " first"
        )
    print(
        "  (our model already skips padding in every linear layer, so length sorting mainly saves"
        " attention work)"
    )
    rows += [
        ("transformers, pad to 512", t_naive_hf),
        ("ours, pad to 512", t_naive),
        ("Embedder.encode, length-sorted", t_enc),
    ]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f = out / f"encoder-{device_name(dev)}.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "seconds", "layers", "dtype", "batch", "device", "torch", "date"])
        for name, t in rows:
            w.writerow(
                [
                    name,
                    f"{t:.6f}",
                    cfg.num_layers,
                    args.dtype,
                    args.batch,
                    device_name(dev),
                    torch.__version__,
                    time.strftime("%Y-%m-%d"),
                ]
            )
    print(f"\nwrote {f}")


if __name__ == "__main__":
    main()
