"""Flash attention workbench: nomic_repro.kernels.flash_attn against PyTorch's attention paths.

    python kernels/flash_attn.py [--dtype bf16|fp16] [--heads 12] [--head-dim 64]
                                 [--tokens 16384] [--lengths 512,1024,2048,4096,8192]
                                 [--mixed 64,2048] [--out kernels/results]

Variants (all non-causal, NomicBERT's 12 heads x 64 by default):
  1. triton_varlen   ours: flash_attn_varlen on packed tokens (padding costs nothing)
  2. sdpa_flash      F.scaled_dot_product_attention, flash backend, dense, no mask (equal lengths
                     only: it cannot take a padding mask, so on a mixed batch it would attend to
                     padding)
  3. sdpa_mask       attention_sdpa with a key-padding mask (PyTorch picks efficient / cuDNN / math)
  4. naive           attention_naive (einsum + fp32 softmax) with the mask
  5. torch_varlen    torch.nn.attention.varlen.varlen_attn (PyTorch's bundled flash kernels), when
                     this torch has it
  6. triton_rope     ours with RoPE fused into the Q/K loads (rotary_inv_freq=), unrotated q, k in
  7. rope_then_triton  apply_rotary on q and k in torch, then ours: the unfused path 6 replaces
Batches: equal lengths 512..8192 (B*S = --tokens), and a mixed batch with lengths drawn uniformly
from 64..2048 (seed 0) up to --tokens real tokens, padded to its longest for the dense peers.
triton_varlen is timed through the public flash_attn_varlen, so each call includes its input
validation, which reads cu_seqlens on the host (one device sync), as the model pays it.
Passes: fwd, and fwd+bwd. FLOPs count only real work: 4*H*D*sum(len^2) forward, x3.5
forward+backward (flash-attention's convention), so on the mixed batch the dense peers' TFLOP/s is
*effective* (padding is waste).

First a correctness check against nomic_repro.attention at tiny shapes (fp32, and fp16; bf16 too on
a GPU). On a CPU only that check runs (under TRITON_INTERPRET=1 timings would measure numpy, not the
kernel).
`--compile-sm90` (works on a CPU): compile, without running, every autotune config of the three
kernels for an H100/H200 (sm_90) with Triton's bundled ptxas, and print each one's shared memory; a
kernel that does not compile for the GPU fails here, not on the rented machine.
On a GPU: timings with triton.testing.do_bench (median), printed with ratios to sdpa_flash (equal
lengths) or sdpa_mask (mixed), and written to kernels/results/flash_attn-<gpu name>.csv.
"""

import argparse, os, sys, warnings
from pathlib import Path

# compile for a GPU we do not have: keep triton out of the interpreter
if "--compile-sm90" in sys.argv:
    os.environ.pop("TRITON_INTERPRET", None)
    # noqa: F401  (before nomic_repro, which would otherwise switch the interpreter on)
    import triton

    warnings.filterwarnings("ignore", message="triton was imported before nomic_repro")
# first: sets TRITON_INTERPRET=1 when there is no GPU, before triton loads
import nomic_repro  # noqa: F401
import torch
import torch.nn.functional as F
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.attention import (
    attention_naive,
    attention_sdpa,
    attention_varlen_ref,
    cu_seqlens_from_lengths,
    unpad,
)
from nomic_repro.kernels.flash_attn import flash_attn_varlen, flash_attn
from nomic_repro.rope import apply_rotary, rotary_inv_freq
from nomic_repro.report import write_results
import triton

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check(device):
    "Tiny-shape correctness against the references; raises on any mismatch."
    seed_everything(0)
    lengths = [1, 7, 64, 129, 300]
    cu = cu_seqlens_from_lengths(lengths, device=device)
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if device.type == "cuda" else [])
    for dtype in dtypes:
        for D in (32, 64, 128):
            q, k, v, do = torch.randn(4, sum(lengths), 2, D, device=device).unbind(0)
            ref_in = [x.to(dtype).double().requires_grad_() for x in (q, k, v)]
            ours_in = [x.to(dtype).requires_grad_() for x in (q, k, v)]
            ref = attention_varlen_ref(*ref_in, cu)
            ref.backward(do.double())
            o = flash_attn_varlen(*ours_in, cu)
            o.backward(do.to(dtype))
            tol = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}[dtype]
            errs = [
                assert_close(a, r.to(dtype), atol=tol, rtol=tol).max_abs
                for a, r in [(o, ref), *[(x.grad, y.grad) for x, y in zip(ours_in, ref_in)]]
            ]
            print(
                f"  {str(dtype)[6:]:8s} D{D:<4d} max err out/dq/dk/dv: "
                + " ".join(f"{e:.1e}" for e in errs)
            )
    B, S = 3, 70
    mask = torch.arange(S, device=device)[None] < torch.tensor([70, 33, 1], device=device)[:, None]
    q, k, v = torch.randn(3, B, S, 2, 64, device=device).unbind(0)
    assert_close(
        flash_attn(q, k, v, mask)[mask], attention_naive(q, k, v, mask)[mask], atol=1e-5, rtol=1e-5
    )
    print("  flash_attn on a padded batch == attention_naive on the real tokens")
    T, D = sum(lengths), 64
    inv_freq = rotary_inv_freq(D, 1000.0, device=device)
    cos, sin = rope_tables(lengths, inv_freq)
    q, k, v = torch.randn(3, T, 2, D, device=device).unbind(0)
    fused = flash_attn_varlen(q, k, v, cu, rotary_inv_freq=inv_freq)
    assert_close(
        fused,
        flash_attn_varlen(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, cu),
        atol=1e-5,
        rtol=1e-5,
    )
    print("  RoPE fused into the kernel == apply_rotary then the kernel")


def rope_tables(lengths, inv_freq):
    "cos, sin [T, D] for packed sequences (positions restart at 0 per sequence)."
    pos = torch.cat([torch.arange(n, device=inv_freq.device) for n in lengths])
    ang = pos[:, None].float() * inv_freq
    ang = torch.cat((ang, ang), -1)
    return ang.cos(), ang.sin()


def flops(lengths, H, D, pas):
    f = 4 * H * D * sum(l * l for l in lengths)
    return f * (3.5 if pas == "fwd+bwd" else 1.0)


def peers(lengths, H, D, dtype, device, equal):
    "name -> (inputs needing grad, fn() -> output) for one batch."
    S, B, T = max(lengths), len(lengths), sum(lengths)
    mask = torch.arange(S, device=device)[None] < torch.tensor(lengths, device=device)[:, None]
    qd, kd, vd = (torch.randn(B, S, H, D, device=device, dtype=dtype) for _ in range(3))
    qp, kp, vp = (unpad(x, mask)[0].contiguous() for x in (qd, kd, vd))
    cu = cu_seqlens_from_lengths(lengths, device=device)
    out = {"triton_varlen": ((qp, kp, vp), lambda: flash_attn_varlen(qp, kp, vp, cu, S))}
    inv_freq = rotary_inv_freq(D, 1000.0, device=device)
    cos, sin = (t.to(dtype) for t in rope_tables(lengths, inv_freq))
    out["triton_rope"] = (
        (qp, kp, vp),
        lambda: flash_attn_varlen(qp, kp, vp, cu, S, rotary_inv_freq=inv_freq),
    )
    out["rope_then_triton"] = (
        (qp, kp, vp),
        lambda: flash_attn_varlen(
            apply_rotary(qp, cos, sin), apply_rotary(kp, cos, sin), vp, cu, S
        ),
    )
    if equal:
        from torch.nn.attention import sdpa_kernel, SDPBackend

        qt, kt, vt = (x.transpose(1, 2).detach() for x in (qd, kd, vd))  # [B, H, S, D] views

        def sdpa_flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(qt, kt, vt)

        out["sdpa_flash"] = ((qt, kt, vt), sdpa_flash)
    out["sdpa_mask"] = ((qd, kd, vd), lambda: attention_sdpa(qd, kd, vd, mask))
    out["naive"] = ((qd, kd, vd), lambda: attention_naive(qd, kd, vd, mask))
    try:
        from torch.nn.attention.varlen import varlen_attn

        out["torch_varlen"] = ((qp, kp, vp), lambda: varlen_attn(qp, kp, vp, cu, cu, S, S))
    except Exception as e:  # older torch, or no flash kernels in this build
        print(f"  (torch_varlen unavailable: {type(e).__name__}: {str(e).splitlines()[0][:200]})")
    return out


def time_one(inputs, fn, pas):
    from triton.testing import do_bench

    for x in inputs:
        x.requires_grad_(pas == "fwd+bwd")
    if pas == "fwd":
        with torch.no_grad():
            return do_bench(fn, warmup=25, rep=100, return_mode="median")
    o = fn()
    g = torch.randn_like(o)
    return do_bench(
        lambda: fn().backward(g),
        warmup=25,
        rep=100,
        grad_to_none=list(inputs),
        return_mode="median",
    )


def sweep(args, device, dtype):
    H, D = args.heads, args.head_dim
    g = torch.Generator().manual_seed(0)
    mixed = []
    lo, hi = (int(x) for x in args.mixed.split(","))
    while sum(mixed) < args.tokens:
        mixed.append(int(torch.randint(lo, hi + 1, (1,), generator=g)))
    equal = [int(x) for x in args.lengths.split(",")]
    batches = [("equal", [S] * max(1, args.tokens // S)) for S in equal] + [("mixed", mixed)]
    gpu = torch.cuda.get_device_name(device)
    rows = []
    for kind, lengths in batches:
        for pas in ("fwd", "fwd+bwd"):
            times = {}
            for name, (inputs, fn) in peers(lengths, H, D, dtype, device, kind == "equal").items():
                try:
                    times[name] = time_one(inputs, fn, pas)
                except torch.OutOfMemoryError:
                    times[name] = float("nan")
                    print(f"  {name}: out of memory")
                except Exception as e:
                    times[name] = float("nan")
                    print(f"  {name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
                torch.cuda.empty_cache()
            base = times.get("sdpa_flash" if kind == "equal" else "sdpa_mask", float("nan"))
            for name, ms in times.items():
                tf = flops(lengths, H, D, pas) / (ms * 1e-3) / 1e12
                rows.append(
                    dict(
                        gpu=gpu,
                        dtype=args.dtype,
                        batch=kind,
                        seqlen=max(lengths),
                        n_seqs=len(lengths),
                        real_tokens=sum(lengths),
                        padded_tokens=len(lengths) * max(lengths),
                        heads=H,
                        head_dim=D,
                        impl=name,
                        **{"pass": pas},
                        ms=round(ms, 4),
                        tflops=round(tf, 2),
                        speedup_vs_base=round(base / ms, 3),
                    )
                )
                print(
                    f"{kind:5s} S={max(lengths):5d} n={len(lengths):3d} {pas:8s} {name:14s}"
                    f" {ms:8.3f} ms {tf:7.1f} TFLOP/s  x{base / ms:.2f}"
                )
    stem = f"flash_attn-{gpu.replace(' ', '-')}"
    print(f"wrote {write_results(rows, args.out, stem)}")


def compile_sm90(dtypes, head_dims):
    """Compile every GPU autotune config of fwd, dK/dV and dQ for sm_90 (no launch); return the
    failures."""
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    import nomic_repro.kernels.flash_attn as fa

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError(
            "the interpreter is on: run --compile-sm90 in a fresh process without TRITON_INTERPRET"
        )
    ints = lambda *names: {n: "i32" for n in names}
    consts = lambda D, b, ieee, rope: {
        "HEAD_DIM": D,
        "BLOCK_M": b["BLOCK_M"],
        "BLOCK_N": b["BLOCK_N"],
        "IEEE": ieee,
        "ROPE": rope,
    }
    failures = []
    for dt in dtypes:
        p = "*" + {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}[dt]
        fwd = {
            "Q": p,
            "K": p,
            "V": p,
            "O": p,
            "LSE": "*fp32",
            "CU": "*i32",
            "INV_FREQ": "*fp32",
            "sm_scale": "fp32",
            **ints(
                "stride_qt",
                "stride_qh",
                "stride_kt",
                "stride_kh",
                "stride_vt",
                "stride_vh",
                "stride_ot",
                "stride_oh",
                "stride_lh",
                "SEQ_BUCKET",
            ),
        }
        bwd = {
            "Q": p,
            "K": p,
            "V": p,
            "DO": p,
            "LSE": "*fp32",
            "DELTA": "*fp32",
            "CU": "*i32",
            "INV_FREQ": "*fp32",
            "sm_scale": "fp32",
            **ints(
                "stride_qt",
                "stride_qh",
                "stride_kt",
                "stride_kh",
                "stride_vt",
                "stride_vh",
                "stride_dt",
                "stride_dh",
                "stride_lh",
                "SEQ_BUCKET",
            ),
        }
        for D in head_dims:
            for name, fn, cfgs, sig in [
                ("fwd", fa._fwd_kernel, fa._FWD_GPU, fwd),
                ("dkdv", fa._dkdv_kernel, fa._DKDV_GPU, {**bwd, "DK": p, "DV": p}),
                ("dq", fa._dq_kernel, fa._DQ_GPU, {**bwd, "DQ": p}),
            ]:
                sig = {
                    **sig,
                    **{c: "constexpr" for c in ("HEAD_DIM", "BLOCK_M", "BLOCK_N", "IEEE", "ROPE")},
                }
                # RoPE-fused: first config
                for (blocks, w, st), rope in [*((c, False) for c in cfgs), (cfgs[0], True)]:
                    src = ASTSource(
                        fn=fn, signature=sig, constexprs=consts(D, blocks, dt == "fp32", rope)
                    )
                    try:
                        smem = triton.compile(
                            src,
                            target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=w, num_stages=st),
                        ).metadata.shared
                        note = (
                            "  (over the H100's 232,448 B: the autotuner skips it)"
                            if smem > 232448
                            else ""
                        )
                        print(
                            f"  {dt} D{D:<3d} {name:4s} M{blocks['BLOCK_M']:<3d}"
                            f" N{blocks['BLOCK_N']:<3d} w{w} s{st}{' rope' if rope else ''}:"
                            f" compiled, {smem} B shared{note}"
                        )
                    except Exception as e:
                        failures.append((dt, D, name, blocks, w, st))
                        print(
                            f"  {dt} D{D} {name} {blocks} w{w} s{st}{' rope' if rope else ''}:"
                            f" FAILED {type(e).__name__}:"
                            f" {str(e).splitlines()[0][:200] if str(e) else ''}"
                        )
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument(
        "--lengths", default="512,1024,2048,4096,8192", help="equal-length batches, comma-separated"
    )
    ap.add_argument(
        "--mixed", default="64,2048", help="min,max of the mixed batch's random lengths"
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument(
        "--compile-sm90",
        action="store_true",
        help="only compile every config for sm_90 (no GPU needed)",
    )
    ap.add_argument("--compile-dtypes", default="bf16,fp16,fp32")
    ap.add_argument("--compile-head-dims", default="32,64,128")
    args = ap.parse_args(argv)
    if args.compile_sm90:
        print("compiling for sm_90 (H100/H200), not launching:")
        failed = compile_sm90(
            args.compile_dtypes.split(","), [int(x) for x in args.compile_head_dims.split(",")]
        )
        print(f"{len(failed)} configs failed to compile")
        return 1 if failed else 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"correctness on {device} (tiny shapes):")
    check(device)
    if device.type != "cuda":
        print(
            "CPU only: correctness checked under the Triton interpreter; no timings (they would"
            " measure numpy, not the kernel). Run this on a GPU for the benchmark."
        )
        return 0
    sweep(args, device, DTYPES[args.dtype])
    return 0


if __name__ == "__main__":
    sys.exit(main())
