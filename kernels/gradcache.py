"""GradCache vs one plain large batch: peak memory and throughput at equal results (loss and
gradients).

    python kernels/gradcache.py [--batch 256] [--chunks 16 64] [--seq 128] [--layers 4] \
        [--hidden 256] [--out kernels/results]

Each variant runs in a fresh subprocess (so peak memory is its own): build a NomicBERT bi-encoder,
take one contrastive step on `--batch` (query, document) pairs of random tokens, record the loss,
the gradient, the time and the peak memory (CUDA: torch.cuda.max_memory_allocated; CPU: the
process's max RSS minus the RSS after the model and data are built). Variants: plain (one
forward/backward over the whole batch) and GradCache with each chunk size. The script checks that
every GradCache run reproduces the plain loss and gradient, then prints the ratios and writes
kernels/results/gradcache-<device>.csv.
"""

import argparse, csv, os, resource, subprocess, sys, time
from pathlib import Path


def child(a):
    import torch
    import nomic_repro  # noqa: F401
    from nomic_repro.core import seed_everything, get_device
    from nomic_repro.model import NomicBert, NomicBertConfig
    from nomic_repro.losses import BiEncoder, info_nce, grad_cache_backward

    dev = get_device()
    seed_everything(0)
    cfg = NomicBertConfig(
        hidden_size=a.hidden,
        num_layers=a.layers,
        num_heads=a.hidden // 64,
        intermediate_size=2 * a.hidden,
    )
    model = BiEncoder(NomicBert(cfg)).to(dev)
    g = torch.Generator().manual_seed(1)
    q = (
        torch.randint(1000, 30000, (a.batch, a.seq // 4), generator=g).to(dev),
        torch.ones(a.batch, a.seq // 4, dtype=torch.long, device=dev),
    )
    d = (
        torch.randint(1000, 30000, (a.batch, a.seq), generator=g).to(dev),
        torch.ones(a.batch, a.seq, dtype=torch.long, device=dev),
    )
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    if a.chunk == 0:
        loss = info_nce(model(*q), model(*d))
        loss.backward()
        loss = loss.detach()
    else:
        loss = grad_cache_backward(model, q, d, lambda x, y: info_nce(x, y), chunk_size=a.chunk)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = (
        (torch.cuda.max_memory_allocated() - base)
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    )
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).cpu()
    torch.save(
        {"loss": loss.cpu(), "grad": grad, "seconds": dt, "peak": peak, "device": str(dev)},
        a.result,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--chunks", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.chunk is not None:
        return child(a)
    import torch

    rows, runs = [], {}
    for chunk in [0, *a.chunks]:
        res = Path(a.out) / f".gradcache-{chunk}.pt"
        res.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            __file__,
            "--batch",
            str(a.batch),
            "--seq",
            str(a.seq),
            "--layers",
            str(a.layers),
            "--hidden",
            str(a.hidden),
            "--chunk",
            str(chunk),
            "--result",
            str(res),
        ]
        subprocess.run(cmd, check=True)
        runs[chunk] = torch.load(res, weights_only=True)
        res.unlink()
    plain = runs[0]
    dev = plain["device"]
    name = (
        torch.cuda.get_device_name().replace(" ", "-")
        if dev.startswith("cuda")
        else f"cpu-{os.cpu_count()}cores"
    )
    print(
        f"batch {a.batch} pairs (queries {a.seq // 4} tokens, documents {a.seq}), NomicBERT"
        f" {a.layers}x{a.hidden}, {name}"
    )
    for chunk, r in runs.items():
        same_loss = abs(r["loss"].item() - plain["loss"].item()) <= 1e-5 * max(
            1, abs(plain["loss"].item())
        )
        gerr = ((r["grad"] - plain["grad"]).abs().max() / plain["grad"].abs().max()).item()
        assert same_loss and gerr < 1e-4, (
            f"GradCache chunk {chunk} does not reproduce the plain step (loss {r['loss']} vs"
            f" {plain['loss']}, grad rel err {gerr})"
        )
        label = "plain batch" if chunk == 0 else f"GradCache, chunk {chunk}"
        print(
            f"  {label:22s} peak {r['peak'] / 2**20:8.1f} MiB ({r['peak'] / plain['peak']:5.2f}x"
            f" plain)  {a.batch / r['seconds']:7.1f} pairs/s"
            f" ({plain['seconds'] / r['seconds']:4.2f}x plain)  loss {r['loss'].item():.6f}  grad"
            f" rel err {gerr:.1e}"
        )
        rows.append(
            [
                label,
                chunk,
                a.batch,
                f"{r['peak'] / 2**20:.1f}",
                f"{r['peak'] / plain['peak']:.3f}",
                f"{a.batch / r['seconds']:.2f}",
                f"{gerr:.2e}",
                name,
                time.strftime("%Y-%m-%d"),
            ]
        )
    f = Path(a.out) / f"gradcache-{name}.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "variant",
                "chunk",
                "batch",
                "peak_mib",
                "peak_vs_plain",
                "pairs_per_s",
                "grad_rel_err",
                "device",
                "date",
            ]
        )
        w.writerows(rows)
    print(f"wrote {f}")


if __name__ == "__main__":
    main()
