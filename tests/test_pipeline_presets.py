"""Pipeline presets beyond the lesson in nbs/19_pipeline.ipynb: v2's stage settings and the refusal of an unknown
stage key (checks that teach nothing new, moved out of the notebook)."""

import pytest
from nomic_repro.pipeline import PIPELINE_PRESETS, get_pipeline_preset


def test_moe_preset_upcycles_with_cosine_schedule_and_aux_loss_only_in_stage_2():
    "arXiv 2502.07972: upcycled to 8 experts, top-2, every other layer; the router's aux loss is off in fine-tuning."
    m = PIPELINE_PRESETS["moe"]
    assert (m.contrastive.upcycle, m.contrastive.train.schedule) == ((8, 2, 2), "cosine")
    assert (m.contrastive.aux_loss_coef, m.finetune.aux_loss_coef) == (1.0, 0.0)


def test_unknown_stage_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown setting 'stage9'"):
        get_pipeline_preset("tiny", ["stage9.x=1"])


def test_stage_keys_reach_their_stage():
    p = get_pipeline_preset("tiny", ["mlm.train.max_steps=7", "finetune.train.lr=3e-5"])
    assert (p.mlm.train.max_steps, p.finetune.train.lr, p.contrastive.temperature) == (
        7,
        3e-5,
        0.02,
    )


def test_v1_and_v2_presets_take_their_negatives_and_weight_decay_as_the_reference_configs():
    """contrastors: `contrastive_finetune.yaml` leaves `sample_negatives` at config.py's True (v1 samples 7 of the
    stored list), `contrastive_finetune_moe.yaml` sets it false (v2 takes the first 10); `mmlm.yaml` has weight decay 0.0;
    `scripts/text/get_negatives.py` mines at 512 tokens (tiny at 256: CPU time)."""
    got = {
        n: (
            p.finetune.data.sample_negatives,
            p.finetune.data.n_negatives,
            p.finetune.data.mine_max_length,
            p.mlm.train.weight_decay,
        )
        for n, p in PIPELINE_PRESETS.items()
    }
    assert got == {
        "tiny": (True, 3, 256, 1e-5),
        "small": (True, 7, 512, 1e-5),
        "base": (True, 7, 512, 1e-5),
        "moe": (False, 10, 512, 0.0),
        "v1.5": (True, 7, 512, 1e-5),
    }, got


def test_a_run_folder_older_than_the_mining_settings_is_refused_before_any_training(tmp_path):
    "A stage-3 folder whose preset.json predates `mine_max_length` (its negatives were mined at 256) does not resume."
    import dataclasses, json
    from nomic_repro.pipeline import run_pipeline

    rec = json.loads(json.dumps(dataclasses.asdict(PIPELINE_PRESETS["tiny"].finetune)))
    del rec["data"]["mine_max_length"]
    (tmp_path / "stage3").mkdir()
    (tmp_path / "stage3" / "preset.json").write_text(json.dumps(rec))
    (tmp_path / "stage3" / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(
        ValueError,
        match=r"data.mine_max_length was not recorded \(the folder predates that setting\)",
    ):
        run_pipeline("tiny", tmp_path)
    assert not (tmp_path / "stage1").exists()  # refused before stage 1 started


def test_every_preset_builds_its_models_with_attn_impl_auto():
    # "auto" wherever a model is built for work: the Triton kernel on a GPU, PyTorch's on a CPU
    for name, p in PIPELINE_PRESETS.items():
        assert (p.mlm.attn_impl, p.contrastive.attn_impl, p.finetune.attn_impl) == ("auto",) * 3
    # which kernel computes attention is not part of the run: a folder resumes on other hardware
    from nomic_repro.train import NOT_PART_OF_THE_RUN

    assert "attn_impl" in NOT_PART_OF_THE_RUN
    p = get_pipeline_preset("tiny", ["stage2.attn_impl=torch"])
    assert p.contrastive.attn_impl == "torch"
