"""Stages 2 and 3 with a v2 (mixture-of-experts) encoder: the router's aux loss is added and logged in stage 2
(coefficient 1) and switched off in stage 3 (coefficient 0), as in Nomic's v2 configs."""

import json
from dataclasses import replace
import torch
from nomic_repro.core import seed_everything
from nomic_repro.model import NomicBertConfig
from nomic_repro.model_moe import NomicBertMoE
from nomic_repro.checkpoint import save_pretrained
from nomic_repro.stage2 import run_contrastive
from nomic_repro.stage3 import run_finetune
from nomic_repro.eval import load_encoder  # loads the miner

CFG = NomicBertConfig(
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
FAST = [
    "data.filter_model=null",
    "eval_tasks=[]",
    "data.doc_max_length=64",
    "train.batch_size=8",
    "train.max_steps=3",
]


def test_moe_aux_loss_in_stage2_and_off_in_stage3(tmp_path):
    seed_everything(0)
    save_pretrained(NomicBertMoE(CFG), tmp_path / "init")
    run_contrastive(
        "tiny",
        tmp_path / "init",
        tmp_path / "s2",
        overrides=FAST + ["data.limit_per_source=40"],
        progress=False,
    )
    log2 = [json.loads(l) for l in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["aux_loss"] > 0.5 and r["expert_load_max_over_mean"] >= 1.0 for r in log2), log2
    run_finetune(
        "tiny",
        tmp_path / "s2" / "model",
        tmp_path / "s3",
        overrides=[f for f in FAST if "filter" not in f] + ["data.limit=40"],
        progress=False,
        load_encoder=load_encoder,
    )
    log3 = [json.loads(l) for l in (tmp_path / "s3" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["aux_loss"] == 0.0 for r in log3), log3
