"""The cost planner (`nomic_repro.plan`): the closed-form parameter count against instantiated models, the base
preset's numbers by hand, scaling with the GPU count, and the errors a user can cause."""

from dataclasses import replace
import pytest
import torch
import nomic_repro  # noqa: F401  (first: sets up Triton's CPU interpreter before transformers imports triton)
from nomic_repro.model import NomicBertConfig, NomicBert, NomicBertForMaskedLM
from nomic_repro.model_moe import NomicBertMoE, V2_MOE_CONFIG, num_parameters
from nomic_repro.plan import (
    GPUS,
    count_parameters,
    training_flops,
    activation_bytes_per_token,
    plan,
    format_plan,
    stage_workload,
)
from nomic_repro.pipeline import PIPELINE_PRESETS, get_pipeline_preset

TINY = NomicBertConfig(
    vocab_size=320, hidden_size=48, num_layers=3, num_heads=4, intermediate_size=80
)
# built like tests/test_stages_moe.py: GELU, biases, MoE on every other layer
TINY_MOE = NomicBertConfig(
    vocab_size=30528,
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    intermediate_size=96,
    activation="gelu",
    qkv_bias=True,
    mlp_fc1_bias=True,
    mlp_fc2_bias=True,
    layer_norm_eps=1e-5,
    rotary_base=10000.0,
    num_experts=4,
    moe_top_k=2,
    moe_every_n_layers=2,
    router_aux_loss_coef=1.0,
)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "cfg",
    [
        TINY,
        replace(TINY, type_vocab_size=0),
        replace(TINY, activation="gelu", qkv_bias=True, mlp_fc1_bias=True, mlp_fc2_bias=True),
    ],
)
def test_dense_parameter_formula_matches_the_model(cfg):
    assert count_parameters(cfg) == n_params(NomicBert(cfg))
    assert count_parameters(cfg, active=True) == count_parameters(cfg)
    for head_cfg in (cfg, replace(cfg, mlm_head_bias=True)):  # tied decoder counted once
        assert count_parameters(head_cfg, mlm_head=True) == n_params(NomicBertForMaskedLM(head_cfg))


@pytest.mark.parametrize("every", [1, 2, 3])
def test_moe_parameter_formula_matches_the_model(every):
    cfg = replace(TINY_MOE, num_layers=4, moe_every_n_layers=every)
    m = NomicBertMoE(cfg)
    assert count_parameters(cfg) == n_params(m) == num_parameters(m)
    assert (
        count_parameters(cfg, active=True) == num_parameters(m, active=True) < count_parameters(cfg)
    )


def test_full_size_parameter_counts():
    assert count_parameters(NomicBertConfig()) == 136_731_648
    assert count_parameters(V2_MOE_CONFIG) == 475_292_928
    assert count_parameters(V2_MOE_CONFIG, active=True) == 305_423_616
    with torch.device("meta"):
        v2 = NomicBertMoE(V2_MOE_CONFIG)
    assert (num_parameters(v2), num_parameters(v2, active=True)) == (475_292_928, 305_423_616)


def test_base_preset_by_hand():
    r = plan("base", 8, "h100")
    s1, s2, s3 = r["stages"]
    assert r["parameters"]["total"] == 136_731_648
    assert s1["tokens_per_step"] == 4096 * 2048 == 8_388_608
    assert s2["tokens_per_step"] == 16_384 * (2048 + 2048)
    assert s3["tokens_per_step"] == 256 * (512 + (1 + 7) * 512)
    assert s1["tokens"] == 8_388_608 * 100_000
    n_body = 136_731_648 - 30528 * 768 - 2 * 768  # no lookup tables in the matmul count
    hand = (
        (6 * n_body + 12 * 12 * 768 * 2048 + 6 * 0.3 * (768 * 768 + 768 * 30528))
        * 8_388_608
        * 100_000
    )
    assert s1["flops"] == pytest.approx(hand, rel=1e-12)
    assert s1["gpu_hours"] == pytest.approx(hand / (989e12 * 0.4) / 3600)
    assert s1["cost"] == pytest.approx(s1["gpu_hours"] * GPUS["h100"].default_price_per_hour)
    assert s1["micro_sequences"] == 64  # 4096 / 8 GPUs / 8 accumulation steps
    text = format_plan(r)
    assert "stage 1: MLM" in text and "8,388,608" in text and "total" in text


def test_gradcache_and_moe_flops():
    base = NomicBertConfig()
    plain, gc = training_flops(base, [(4, 256)]), training_flops(base, [(4, 256)], grad_cache=True)
    assert gc["dense"] * 6 == plain["dense"] * 8 and gc["attention"] * 6 == plain["attention"] * 8
    moe = training_flops(TINY_MOE, [(2, 32)])
    assert moe["dense"] == 6 * (count_parameters(TINY_MOE, active=True) - 30528 * 64 - 2 * 64) * 64


def test_activation_formula_matches_autograd():
    cfg = NomicBertConfig(
        vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=192
    )
    model = NomicBert(cfg)

    def saved(B, S=64):
        seen = {}

        def pack(t):
            s = t.untyped_storage()
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
            return t

        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            torch.autocast("cpu", dtype=torch.bfloat16),
        ):
            model(torch.randint(0, 512, (B, S)))
        return sum(seen.values())

    per_token = (saved(6) - saved(2)) / (4 * 64)
    assert per_token == pytest.approx(activation_bytes_per_token(cfg), rel=0.03)


@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_more_gpus_fewer_wall_hours_same_gpu_hours(preset):
    r8, r16 = plan(preset, 8, "a100"), plan(preset, 16, "a100")
    assert r16["total"]["wall_hours"] < r8["total"]["wall_hours"]
    assert r16["total"]["wall_hours"] == pytest.approx(r8["total"]["wall_hours"] / 2)
    assert r16["total"]["gpu_hours"] == pytest.approx(r8["total"]["gpu_hours"])
    assert r16["total"]["cost"] == pytest.approx(r8["total"]["cost"])
    assert plan(preset, 8, "a100", mfu=0.2)["total"]["gpu_hours"] == pytest.approx(
        2 * r8["total"]["gpu_hours"]
    )
    assert plan(preset, 8, "a100", price_per_hour=2.0)["total"]["cost"] == pytest.approx(
        2.0 * r8["total"]["gpu_hours"]
    )


def test_memory_and_suggestions():
    r = plan("base", 8, "h100")
    s1 = r["stages"][0]
    assert not s1["fits"] and s1["suggestion"] == "mlm.train.grad_accum=16"
    fixed = plan("base", 8, "h100", overrides=[s1["suggestion"]])["stages"][0]
    assert fixed["fits"] and fixed["suggestion"] is None and fixed["micro_sequences"] == 32
    assert fixed["flops"] == pytest.approx(s1["flops"])  # accumulation changes memory, not compute
    assert plan("base", 8, "h200")["stages"][0]["fits"]
    assert plan("tiny", 1, "cpu")["total"]["fits"]


def test_overrides_and_preset_resolution():
    assert {"tiny", "small", "base"} <= set(PIPELINE_PRESETS)
    p = get_pipeline_preset("base", ["contrastive.data.doc_max_length=256"])
    assert stage_workload(p, "contrastive")["sequences"] == [(16_384, 2048), (16_384, 256)]
    r = plan(
        "base",
        overrides=["contrastive.data.doc_max_length=256", "contrastive.data.query_max_length=64"],
    )
    assert r["stages"][1]["tokens_per_step"] == 16_384 * (64 + 256)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(preset="huge"), "choose one of"),
        (
            dict(preset="base", gpu="tpu"),
            "choose one of ['a100', 'a10g', 'cpu', 'h100', 'h200', 'l4']",
        ),
        (dict(preset="base", n_gpus=0), "n_gpus must be an integer >= 1"),
        (dict(preset="base", n_gpus=-3), "n_gpus must be an integer >= 1"),
        (dict(preset="base", n_gpus=2.5), "n_gpus must be an integer >= 1"),
        (dict(preset="base", mfu=0), "mfu must be in (0, 1]"),
        (dict(preset="base", mfu=-0.1), "mfu must be in (0, 1]"),
        (dict(preset="base", mfu=1.01), "mfu must be in (0, 1]"),
        (dict(preset="base", price_per_hour=-1.0), "price_per_hour must be >= 0"),
        (dict(preset="base", overrides=["mlm.train.nope=1"]), "nope"),
    ],
)
def test_errors_name_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=None) as e:
        plan(**kwargs)
    assert message in str(e.value)
    if kwargs.get("preset") == "huge":
        assert str(PIPELINE_PRESETS.names()) in str(e.value)
