"""Nomic Embed v2's mixture of experts: routing, the aux loss, upcycling, the Triton kernels (under the CPU interpreter)
against the reference loop, the grouped_mm path, and the v2 model and checkpoint layout."""

import json
from dataclasses import replace
import pytest, torch
import torch.nn.functional as F
from safetensors.torch import save_file
from nomic_repro.core import assert_close, seed_everything
from nomic_repro.model import NomicBert, NomicBertConfig
from nomic_repro.moe import (
    route,
    load_balancing_loss,
    expert_load,
    expert_mlp,
    moe_mlp_reference,
    MoEMLP,
    upcycle,
    moe_aux_loss,
)
from nomic_repro.kernels.moe import moe_mlp, moe_mlp_grouped_mm, dispatch_plan
from nomic_repro.model_moe import NomicBertMoE, V2_MOE_CONFIG, num_parameters, v2_config_json
from nomic_repro.checkpoint import load_pretrained, CheckpointError, save_pretrained

TINY = replace(
    V2_MOE_CONFIG,
    vocab_size=300,
    hidden_size=32,
    num_layers=4,
    num_heads=2,
    intermediate_size=48,
    num_experts=4,
)


# ---- routing and the aux loss -------------------------------------------------------------------------------------
def test_route_keeps_unnormalised_top_k_in_fp32():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float16)
    probs, w, idx = route(logits, 2)
    assert probs.dtype == w.dtype == torch.float32
    assert idx.tolist() == [[0, 1]]
    assert_close(w, probs[:, :2])
    assert w.sum().item() < 1.0


@pytest.mark.parametrize("E,k", [(8, 2), (4, 1), (6, 3)])
def test_aux_loss_is_one_at_perfect_balance_and_at_most_e_over_k(E, k):
    T = 12 * E
    idx = torch.stack([(torch.arange(T) + j) % E for j in range(k)], -1)
    assert load_balancing_loss(torch.full((T, E), 1 / E), idx).item() == pytest.approx(
        1.0, abs=1e-6
    )
    collapsed = torch.zeros(T, E)
    collapsed[:, :k] = 1 / k  # every token on the first k experts
    worst = load_balancing_loss(collapsed, torch.arange(k).expand(T, k))
    assert worst.item() == pytest.approx(E / k, rel=1e-6)


def test_bad_top_k_is_refused():
    with pytest.raises(ValueError, match="top_k must be in"):
        route(torch.randn(3, 4), 5)
    with pytest.raises(ValueError, match="moe_top_k must be in"):
        replace(TINY, moe_top_k=5)
    with pytest.raises(ValueError, match="mixture-of-experts config needs activation='gelu'"):
        NomicBertConfig(num_experts=8, moe_every_n_layers=2)


# ---- upcycling ----------------------------------------------------------------------------------------------------
def test_upcycled_experts_are_the_dense_mlp_without_biases():
    seed_everything(0)
    dense = NomicBert(replace(TINY, num_experts=0, moe_every_n_layers=0))
    for p in dense.parameters():
        p.data.normal_(std=0.1)
    moe = upcycle(dense, num_experts=3, top_k=2)
    x = torch.randn(9, 32)
    for i, layer in enumerate(moe.encoder.layers):
        d = dense.encoder.layers[i].mlp
        if i % 2 == 0:
            assert type(layer.mlp).__name__ == "NomicBertMLP"
            continue
        want = F.linear(F.gelu(F.linear(x, d.fc1.weight)), d.fc2.weight)
        w1, w2 = layer.mlp.experts.stacked()
        for e in range(3):
            assert_close(expert_mlp(x, w1[e], w2[e]), want, rtol=1e-5, atol=1e-6)
        assert layer.mlp.experts.bias.abs().max().item() == 0.0


# ---- kernels against the reference --------------------------------------------------------------------------------
def _errors(T, H, I, E, k, dtype, fn, topk_idx=None, seed=0):
    "Max error against fp64 of `fn` and of the torch reference at `dtype`: out, dx, dw1, dw2, dgate."
    seed_everything(seed)
    x, w1, w2 = torch.randn(T, H), torch.randn(E, I, H) * H**-0.5, torch.randn(E, I, H) * I**-0.5
    _, tw, ti = route(torch.randn(T, E), k)
    ti = ti if topk_idx is None else topk_idx
    g = torch.randn(T, H)

    def run(f, dt):
        ins = [t.detach().to(dt, copy=True).requires_grad_() for t in (x, tw, w1, w2)]
        out = f(ins[0], ti, ins[1], ins[2], ins[3])
        out.backward(g.to(dt))
        assert out.dtype == dt and ins[0].grad.dtype == dt
        return [out.detach().double()] + [ins[i].grad.double() for i in (0, 2, 3, 1)]

    exact, ours, theirs = (
        run(moe_mlp_reference, torch.float64),
        run(fn, dtype),
        run(moe_mlp_reference, dtype),
    )
    return [
        ((o - e).abs().max().item(), (t - e).abs().max().item())
        for e, o, t in zip(exact, ours, theirs)
    ]


CASES = {  # T, H, I, E, k, topk_idx
    "plain": (29, 32, 48, 4, 2, None),
    "not a tile multiple, many experts": (19, 48, 80, 8, 2, None),
    "fewer tokens than experts": (3, 32, 48, 8, 2, None),
    "all tokens on one expert": (21, 32, 48, 8, 1, torch.full((21, 1), 6)),
    "top-3": (17, 32, 48, 4, 3, None),
}


@pytest.mark.parametrize(
    "dtype,floor", [(torch.float32, 1e-6), (torch.float16, 1e-4)], ids=["fp32", "fp16"]
)
@pytest.mark.parametrize("case", list(CASES))
def test_triton_moe_matches_reference(case, dtype, floor):
    T, H, I, E, k, ti = CASES[case]
    for name, (err_kernel, err_torch) in zip(
        ("out", "dx", "dw1", "dw2", "dgate"), _errors(T, H, I, E, k, dtype, moe_mlp, ti)
    ):
        assert err_kernel <= 2 * err_torch + floor, (
            f"{case} {name}: kernel {err_kernel:.3g} vs torch {err_torch:.3g}"
        )


@pytest.mark.parametrize("case", ["plain", "fewer tokens than experts", "all tokens on one expert"])
def test_grouped_mm_matches_reference(case):
    T, H, I, E, k, ti = CASES[case]
    for name, (err_gmm, err_torch) in zip(
        ("out", "dx", "dw1", "dw2", "dgate"),
        _errors(T, H, I, E, k, torch.float32, moe_mlp_grouped_mm, ti),
    ):
        assert err_gmm <= 2 * err_torch + 1e-5, (
            f"{case} {name}: grouped_mm {err_gmm:.3g} vs torch {err_torch:.3g}"
        )


def test_zero_tokens_and_dispatch_plan():
    x, w = torch.zeros(0, 32), torch.randn(4, 48, 32)
    assert moe_mlp(x, torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 2), w, w).shape == (0, 32)
    ti = torch.randint(0, 5, (40, 2))
    p = dispatch_plan(ti, 5)
    assert p.offsets.tolist() == [0] + torch.cumsum(expert_load(ti, 5), 0).tolist()
    sorted_e = torch.sort(ti.flatten(), stable=True).values
    assert torch.equal(sorted_e[p.pos.long()], ti.flatten())  # pos inverts the sort
    assert torch.equal(p.tok.long(), torch.sort(ti.flatten(), stable=True).indices // 2)


def test_kernel_input_errors():
    x, w = torch.randn(5, 32), torch.randn(4, 48, 32)
    ti, tw = torch.zeros(5, 2, dtype=torch.long), torch.rand(5, 2)
    with pytest.raises(ValueError, match="must share one dtype"):
        moe_mlp(x.double(), ti, tw, w.double(), w)
    with pytest.raises(ValueError, match=r"topk_idx must lie in \[0, 4\)"):
        moe_mlp(x, ti - 1, tw, w, w)
    with pytest.raises(ValueError, match="w1 and w2 must both be"):
        moe_mlp(x, ti, tw, w, w[:3])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="computed wrongly by the Triton interpreter"):
            moe_mlp(x.bfloat16(), ti, tw, w.bfloat16(), w.bfloat16())


# ---- the v2 model -------------------------------------------------------------------------------------------------
def test_full_v2_parameter_counts():
    with torch.device("meta"):
        m = NomicBertMoE(V2_MOE_CONFIG)
    assert num_parameters(m) == 475_292_928
    assert num_parameters(m, active=True) == 305_423_616
    assert len(m.state_dict()) == 148


def _v2_state_dict(cfg, E):
    H, I = cfg.hidden_size, cfg.intermediate_size
    sd = {
        "embeddings.word_embeddings.weight": torch.randn(cfg.vocab_size, H),
        "embeddings.token_type_embeddings.weight": torch.randn(1, H),
        "emb_ln.weight": torch.ones(H),
        "emb_ln.bias": torch.zeros(H),
    }
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}."
        sd |= {
            p + "attn.Wqkv.weight": torch.randn(3 * H, H) * 0.1,
            p + "attn.Wqkv.bias": torch.randn(3 * H) * 0.1,
            p + "attn.out_proj.weight": torch.randn(H, H) * 0.1,
            p + "attn.out_proj.bias": torch.randn(H) * 0.1,
        }
        sd |= {p + f"{n}.weight": 1 + 0.1 * torch.randn(H) for n in ("norm1", "norm2")} | {
            p + f"{n}.bias": 0.1 * torch.randn(H) for n in ("norm1", "norm2")
        }
        if i % 2 == 0:
            sd |= {
                p + "mlp.fc1.weight": torch.randn(I, H) * 0.1,
                p + "mlp.fc1.bias": torch.randn(I) * 0.1,
                p + "mlp.fc2.weight": torch.randn(H, I) * 0.1,
                p + "mlp.fc2.bias": torch.randn(H) * 0.1,
            }
        else:
            sd |= {
                p + "mlp.router.layer.weight": torch.randn(E, H),
                p + "mlp.experts.mlp.w1": torch.randn(E * I, H) * 0.1,
                p + "mlp.experts.mlp.w2": torch.randn(E * I, H) * 0.1,
                p + "mlp.experts.bias": torch.randn(H) * 0.1,
            }
    return sd


@pytest.fixture(scope="module")
def v2_folder(tmp_path_factory):
    seed_everything(1)
    d = tmp_path_factory.mktemp("v2")
    save_file(_v2_state_dict(TINY, 4), str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(v2_config_json(TINY)))
    return d


def test_v2_checkpoint_loads_runs_and_triton_matches_torch(v2_folder):
    m = load_pretrained(v2_folder)
    assert isinstance(m, NomicBertMoE) and m.config == TINY
    ids = torch.randint(3, 300, (3, 13))
    am = (torch.arange(13)[None] < torch.tensor([13, 7, 1])[:, None]).long()
    with torch.no_grad():
        ref = m(ids, am, return_aux=True)
        assert ref.expert_load.sum().item() == 2 * 21 * 2  # 2 MoE layers × 21 real tokens × top-2
        for impl in ("triton", "grouped_mm"):
            mt = load_pretrained(v2_folder, moe_impl=impl)
            got = mt(ids, am, return_aux=True)
            assert_close(got.last_hidden_state, ref.last_hidden_state, rtol=1e-5, atol=1e-5)
            assert_close(got.aux_loss, ref.aux_loss)
            assert torch.equal(got.expert_load, ref.expert_load)


def test_v2_save_load_round_trip(v2_folder, tmp_path):
    m = load_pretrained(v2_folder)
    save_pretrained(m, tmp_path / "again")
    m2 = load_pretrained(tmp_path / "again")
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        assert_close(m2(ids), m(ids))


def test_wrong_number_of_experts_in_checkpoint(v2_folder, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(v2_config_json(TINY)))
    save_file(_v2_state_dict(TINY, 3), str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="3 experts × 48, but config.json says num_experts=4"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**v2_config_json(TINY), "moe_top_k": 6}))
    with pytest.raises(ValueError, match=r"moe_top_k must be in \[1, num_experts=4\]"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({**v2_config_json(TINY), "moe_normalize_expert_weights": True})
    )
    with pytest.raises(CheckpointError, match="moe_normalize_expert_weights=True"):
        load_pretrained(tmp_path)


def test_aux_loss_trains_the_router_and_is_scaled_by_the_coefficient():
    seed_everything(2)
    m = NomicBertMoE(replace(TINY, router_aux_loss_coef=0.25))
    ids = torch.randint(3, 300, (2, 10))
    out = m(ids, return_aux=True)
    assert_close(out.aux_loss, 0.25 * moe_aux_loss(m))
    out.aux_loss.backward()
    assert all(l.mlp.router.layer.weight.grad.abs().sum() > 0 for l in m.encoder.layers[1::2])
    assert m.encoder.layers[3].mlp.experts.mlp.w1.grad is None  # the last experts feed no router
