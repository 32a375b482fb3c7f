"""Pipeline presets beyond the lesson in nbs/18_pipeline.ipynb: v2's stage settings and the refusal of an unknown
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
    assert (p.mlm.train.max_steps, p.finetune.train.lr, p.contrastive.temperature) == (7, 3e-5, 0.02)
