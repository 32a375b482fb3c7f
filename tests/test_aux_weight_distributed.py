"""Stage 2's step weighs InfoNCE and the router's aux loss as contrastors does (`src/contrastors/trainers/text_text.py`
`_forward_step`, `src/contrastors/loss.py` `clip_loss`): rank r backpropagates J_r = W·mean InfoNCE_r + c·(aux of its
query forward + aux of its document forward) and DDP averages the gradients. Checked at W = 1 (one process) and W = 2
(two gloo processes, DDP), plainly and through GradCache, against that formula written out here from scratch."""

import subprocess, sys
from pathlib import Path
import torch
import torch.nn.functional as F
from nomic_repro.core import assert_close
from nomic_repro.moe import moe_layers, expert_load

sys.path.insert(0, str(Path(__file__).parent))
from _aux_worker import B, TAU, COEF, model, batch, shard, step  # noqa: E402
from _launch import launch_env, launcher  # noqa: E402


def megablocks_aux(m):
    """The load-balancing loss of `m`'s last forward as megablocks' `batched_load_balancing_loss` computes it:
    c·E/(L·T·k) · Σ_layers Σ_e (token-slots to e) · (mean router probability of e), in fp64."""
    layers = moe_layers(m)
    E, k, T = (
        layers[0].experts.num_experts,
        layers[0].last_topk_idx.shape[1],
        len(layers[0].last_probs),
    )
    s = sum(
        (expert_load(l.last_topk_idx, E).double() * l.last_probs.double().mean(0)).sum()
        for l in layers
    )
    return COEF * E / (len(layers) * T * k) * s


def reference(w):
    """contrastors at world size w, in one process: each rank's shard embedded query side then document side (an aux loss
    each), documents of all ranks as candidates, J_r = w·CE_r + c·(a_q + a_d); DDP's gradient is that of mean_r J_r."""
    m, b = model(), batch()
    qs, ds, aux = [], [], []
    for r in range(w):
        (qi, qm), (di, dm), _ = shard(b, r, w)
        qs.append(m(qi, qm))
        a_q = megablocks_aux(m)
        ds.append(m(di, dm))
        aux.append(a_q + megablocks_aux(m))
    D = torch.cat(ds)
    ce = [
        F.cross_entropy(q @ D.T / TAU, torch.arange(len(q)) + r * len(q)) for r, q in enumerate(qs)
    ]
    J = [w * c + a for c, a in zip(ce, aux)]
    (sum(J) / w).backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    mean = lambda xs: float(sum(xs).detach() / w)
    return mean(J), grads, mean(ce), mean(aux)  # the objective, its gradient, mean InfoNCE, c·ā


def flat(g):
    return torch.cat([g[n].flatten() for n in sorted(g)])


def check(w, results):
    "Every rank's DDP gradient, the logged loss and its parts equal the reference at world size w."
    obj, g_ref, nce, aux = reference(w)
    g_ref = flat(g_ref)
    # the embeddings are fp32 (mean pooling): rounding of order 2^-24 per token, over the B·S tokens of the batch
    tol = B * 12 * 2**-24 * g_ref.abs().max().item()
    for mode in ("plain", "grad_cache"):
        rs = [r[mode] for r in results]
        for r in rs:
            assert_close(flat(r["grads"]), g_ref, rtol=0, atol=tol)
        assert abs(sum(r["loss"] for r in rs) / B - obj) <= 1e-5 * obj, mode
        assert abs(sum(r["metrics"]["infonce"] for r in rs) / B - nce) <= 1e-5 * nce, mode
        assert abs(sum(r["metrics"]["aux_loss"] for r in rs) / B - aux) <= 1e-9, mode
    return obj, nce, aux, g_ref, tol


def grad_of(loss_fn):
    "Gradient of `loss_fn(model)` on a fresh copy of the model (fp64 weights)."
    m = model()
    loss_fn(m).backward()
    return flat(
        {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in m.named_parameters()}
    )


def aux_part(w):
    "c × the mean over ranks of (query-side aux + document-side aux), each rank's shard embedded on its own."

    def f(m):
        b, a = batch(), 0
        for r in range(w):
            (qi, qm), (di, dm), _ = shard(b, r, w)
            m(qi, qm)
            a = a + megablocks_aux(m)
            m(di, dm)
            a = a + megablocks_aux(m)
        return a / w

    return grad_of(f)


def test_w1_one_process_is_infonce_plus_both_sides_aux():
    obj, nce, aux, g_ref, tol = check(1, [{"plain": step(None, 0, 1), "grad_cache": step(3, 0, 1)}])
    assert 1.5 < aux / COEF < 3.0  # two aux losses, each ≈ 1 near balance


def test_w2_ddp_gradient_is_contrastors(tmp_path):
    cmd = [*launcher(2), str(Path(__file__).parent / "_aux_worker.py"), str(tmp_path)]
    r = subprocess.run(cmd, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    results = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2)]
    obj, nce, aux, g_ref, tol = check(2, results)
    # the step = 2 × the one-process gradient of the global batch's mean InfoNCE + the aux part (mean over ranks);
    # without clip_loss's × W, DDP's average alone would give 1 × that gradient: far from what was applied
    (qi, qm), (di, dm) = batch()
    g_mean = grad_of(lambda m: F.cross_entropy(m(qi, qm) @ m(di, dm).T / TAU, torch.arange(B)))
    g_aux = aux_part(2)
    g_ddp = flat(results[0]["plain"]["grads"])
    assert_close(g_ddp, 2 * g_mean + g_aux, rtol=0, atol=tol)
    assert (g_ddp - (g_mean + g_aux)).abs().max() > 100 * tol

    # and its aux part is the per-side one: one aux loss over queries and documents together (our step before) differs
    def joint(m):
        a, pad = 0, lambda x: F.pad(x, (0, di.shape[1] - qi.shape[1]))
        for r in range(2):
            (sq, sqm), (sd, sdm), _ = shard(batch(), r, 2)
            m(torch.cat([pad(sq), sd]), torch.cat([pad(sqm), sdm]))
            a = a + megablocks_aux(m)
        return a / 2

    assert (g_ddp - (2 * g_mean + grad_of(joint))).abs().max() > 100 * tol
