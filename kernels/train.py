"""Training throughput of the stage-1 presets: tokens/s (and model FLOPs utilisation on a GPU).

    python kernels/train.py [--presets tiny small] [--steps 5] [--batch N] [--out kernels/results]

For each preset: the preset's model, sequence length and attention implementation (Triton only on a
GPU), a real batch from the vendored corpus, `--steps` timed optimizer steps after one warm-up step,
through the same `train` loop stage 1 uses (AdamW, masking, head on masked tokens). On a CPU the
batch is cut to `--batch` sequences (default 8) so a step of `small` takes seconds; tokens/s barely
depends on the batch there. MFU on a GPU: 6 · (non-embedding parameters) · tokens/s, plus attention
12 · layers · hidden · seq · tokens/s, over the GPU's bf16 dense peak (H100/H200 SXM: 989 TFLOP/s).
Writes kernels/results/train-<device>.csv.
"""

import argparse, csv, json, os, tempfile, time
from pathlib import Path
import torch
import nomic_repro  # noqa: F401
from nomic_repro.core import get_device
from nomic_repro.stage1 import get_mlm_preset, run_mlm

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def device_name(dev):
    return (
        torch.cuda.get_device_name(dev).replace(" ", "-")
        if dev.type == "cuda"
        else f"cpu-{os.cpu_count()}cores"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
    dev = get_device()
    rows = []
    for name in a.presets:
        p = get_mlm_preset(name)
        batch = a.batch or (p.train.batch_size if dev.type == "cuda" else 8)
        attn = "triton" if dev.type == "cuda" else "torch"
        sets = [
            f"train.max_steps={a.steps + 1}",
            f"train.batch_size={batch}",
            "train.grad_accum=1",
            f"attn_impl={attn}",
            "train.save_every=100000",
            "train.log_every=1",
            "data.limit_docs=4000",
        ]
        if name == "base":
            sets[-1] = 'data.sources=["mlm/wikipedia.jsonl.gz"]'
        with tempfile.TemporaryDirectory() as d:
            t0 = time.time()
            run_mlm(name, d, overrides=sets, progress=False)
            log = [json.loads(l) for l in open(Path(d) / "metrics.jsonl")]
        tps = sum(r["tokens_per_s"] for r in log[1:]) / len(log[1:])
        cfg = p.model
        n_params = (
            sum(x.numel() for x in nomic_repro.model.NomicBert(cfg).parameters())
            - cfg.vocab_size * cfg.hidden_size
        )
        flops_per_token = 6 * n_params + 12 * cfg.num_layers * cfg.hidden_size * p.data.seq_len
        peak = (
            next((v for k, v in PEAK_BF16.items() if k in device_name(dev)), None)
            if dev.type == "cuda"
            else None
        )
        mfu = flops_per_token * tps / peak if peak else None
        print(
            f"{name:6s} {device_name(dev)}: {tps:10.0f} tokens/s  (batch {batch} x seq <="
            f" {p.data.seq_len}, {attn} attention"
            + (f", MFU {mfu:.1%}" if mfu else "")
            + f"; {time.time() - t0:.0f} s incl. data)"
        )
        rows.append(
            [
                name,
                f"{tps:.1f}",
                batch,
                p.data.seq_len,
                attn,
                f"{mfu:.4f}" if mfu else "",
                device_name(dev),
                torch.__version__,
                time.strftime("%Y-%m-%d"),
            ]
        )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    f = out / f"train-{device_name(dev)}.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "preset",
                "tokens_per_s",
                "batch",
                "max_seq_len",
                "attn_impl",
                "mfu",
                "device",
                "torch",
                "date",
            ]
        )
        w.writerows(rows)
    print(f"wrote {f}")


if __name__ == "__main__":
    main()
