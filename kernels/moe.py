"""MoE MLP throughput: the Triton dropless kernels against the per-expert loop and
torch.nn.functional.grouped_mm.

    python kernels/moe.py [--tokens 8192 16384 32768 65536] [--dtype bf16|fp16|fp32] [--repeats 3]
                          [--out kernels/results]

Variants (same inputs, same routing; the layer of nomic-embed-text-v2-moe: 8 experts, top-2,
768 -> 3072 -> 768, GELU):
  1. loop        nomic_repro.moe.moe_mlp_reference: a Python loop over experts (index, two matmuls,
                 index_add)
  2. grouped_mm  nomic_repro.kernels.moe.moe_mlp_grouped_mm: one sort, F.grouped_mm twice, an
                 indexed combine
  3. triton      nomic_repro.kernels.moe.moe_mlp: one sort, two Triton grouped GEMMs (GELU fused),
                 a Triton combine
Each is timed forward only and forward+backward (gradients for x, w1, w2 and the router weights).

First a correctness check of 2 and 3 against 1 at tiny shapes (fp32; on a CPU the Triton kernels run
in the interpreter), then the sweep: on CUDA with triton.testing.do_bench (median ms, TFLOP/s with
4·T·k·H·I FLOPs forward and 3x that for forward+backward); on a CPU only grouped_mm against the loop
(the interpreter is not a speed), at --cpu-tokens tokens in fp32, printed as a ratio. Results go to
kernels/results/moe-<device>.csv.
"""

import argparse, os, statistics, sys, time
from pathlib import Path
import torch
import nomic_repro  # noqa: F401  (first: sets TRITON_INTERPRET=1 on a machine without CUDA)
from nomic_repro.core import assert_close, seed_everything, get_device
from nomic_repro.moe import moe_mlp_reference, route
from nomic_repro.report import write_results
from nomic_repro.kernels.moe import moe_mlp, moe_mlp_grouped_mm

IMPLS = {"loop": moe_mlp_reference, "grouped_mm": moe_mlp_grouped_mm, "triton": moe_mlp}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def inputs(T, H, I, E, k, dtype, dev, seed=0):
    seed_everything(seed)
    x = torch.randn(T, H, device=dev, dtype=dtype)
    w1 = (torch.randn(E, I, H, device=dev) * H**-0.5).to(dtype)
    w2 = (torch.randn(E, I, H, device=dev) * I**-0.5).to(dtype)
    _, tw, ti = route(torch.randn(T, E, device=dev), k)
    return x, ti, tw.to(dtype), w1, w2, torch.randn(T, H, device=dev, dtype=dtype)


def check(dev):
    "Tiny shapes, fp32: outputs and all four gradients of grouped_mm and triton equal the loop's."
    for T, E in ((37, 4), (5, 8), (64, 8)):
        x, ti, tw, w1, w2, g = inputs(T, 32, 64, E, 2, torch.float32, dev)
        res = {}
        for name, fn in IMPLS.items():
            ins = [t.clone().requires_grad_() for t in (x, tw, w1, w2)]
            out = fn(ins[0], ti, ins[1], ins[2], ins[3])
            out.backward(g)
            res[name] = [out.detach()] + [t.grad for t in ins]
        for name in ("grouped_mm", "triton"):
            for a, b in zip(res[name], res["loop"]):
                assert_close(a, b, rtol=1e-4, atol=1e-5)
    print(
        "correctness: grouped_mm and triton match the per-expert loop (out, dx, dgate, dw1, dw2) at"
        " T in 37, 5, 64"
    )


def step(fn, x, ti, tw, w1, w2, g, backward):
    if not backward:
        return lambda: fn(x, ti, tw, w1, w2)
    ins = [t.detach().clone().requires_grad_() for t in (x, tw, w1, w2)]

    def run():
        for t in ins:
            t.grad = None
        fn(ins[0], ti, ins[1], ins[2], ins[3]).backward(g)

    return run


def time_cpu(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    ap.add_argument("--cpu-tokens", type=int, default=2048)
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--inner", type=int, default=3072)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    dev = get_device()
    check(dev)
    H, I, E, k = args.hidden, args.inner, args.experts, args.top_k
    rows = []
    if dev.type == "cuda":
        import triton

        name, dtype, impls, tokens = (
            torch.cuda.get_device_name(dev).replace(" ", "-"),
            DTYPES[args.dtype],
            list(IMPLS),
            args.tokens,
        )
        timer = lambda f: triton.testing.do_bench(f, warmup=25, rep=100)
    else:
        name, dtype, impls, tokens = (
            f"cpu-{os.cpu_count()}cores",
            torch.float32,
            ["loop", "grouped_mm"],
            [args.cpu_tokens],
        )
        timer = lambda f: time_cpu(f, args.repeats)
    for T in tokens:
        x, ti, tw, w1, w2, g = inputs(T, H, I, E, k, dtype, dev)
        for backward in (False, True):
            ms = {impl: timer(step(IMPLS[impl], x, ti, tw, w1, w2, g, backward)) for impl in impls}
            flops = 4 * T * k * H * I * (3 if backward else 1)
            for impl, t in ms.items():
                rows.append(
                    {
                        "device": name,
                        "dtype": str(dtype).replace("torch.", ""),
                        "tokens": T,
                        "experts": E,
                        "top_k": k,
                        "hidden": H,
                        "inner": I,
                        "pass": "fwd+bwd" if backward else "fwd",
                        "impl": impl,
                        "ms": round(t, 3),
                        "tflops": round(flops / t / 1e9, 3),
                        "speedup_vs_loop": round(ms["loop"] / t, 3),
                    }
                )
            print(
                f"T={T:6d} {'fwd+bwd' if backward else 'fwd    '} "
                + "  ".join(
                    f"{i}: {t:9.2f} ms ({ms['loop'] / t:4.2f}x loop)" for i, t in ms.items()
                )
            )
    print(f"wrote {write_results(rows, args.out, f'moe-{name}')}")
    if dev.type != "cuda":
        print(
            "no CUDA device: the Triton kernels were only checked for correctness (interpreter);"
            " GPU timings are unmeasured"
        )


if __name__ == "__main__":
    sys.exit(main())
