"""Extending the project is one registration per thing (README "Extending it"): a new pipeline
preset with `register_preset` and a new BEIR-folder evaluation task with `register_task`, each one
call, after which the real command line (`nomic_repro.cli.main`, what the `nomic-repro` script
runs) trains, plans and evaluates with them."""

import json
from dataclasses import replace
import pytest
import nomic_repro  # noqa: F401  (first: Triton's CPU interpreter before triton is imported)
from nomic_repro import eval as ev
from _cli import TOPICS, cli, write_beir
from nomic_repro.pipeline import PIPELINE_PRESETS, register_preset, get_pipeline_preset
from nomic_repro.stage1 import MLM_PRESETS
from nomic_repro.stage2 import STAGE2_PRESETS
from nomic_repro.stage3 import STAGE3_PRESETS


@pytest.fixture
def registered(tmp_path):
    "The task `mydev` and the preset `mini` registered (one call each), removed afterwards."
    task = ev.register_task("mydev", write_beir(tmp_path / "mydev"))  # one call: a BEIR folder
    steps = [
        "mlm.train.max_steps=4", "mlm.train.batch_size=8", "mlm.data.limit_docs=100",
        "contrastive.train.max_steps=4", "contrastive.train.batch_size=16",
        "contrastive.data.limit_per_source=100", "contrastive.data.filter_sample_size=100",
        "contrastive.data.filter_max_length=64",
        "finetune.train.max_steps=4", "finetune.train.batch_size=8", "finetune.data.limit=32",
    ]  # fmt: skip
    mini = replace(
        get_pipeline_preset("tiny", steps),
        name="mini",
        eval_tasks=("mydev",),
        baselines=("bm25",),
        long_context=(),
    )
    preset = register_preset(mini)  # one call: run, plan, mlm, contrastive and finetune know it
    yield task, preset
    ev.TASKS.pop("mydev")
    for registry in (PIPELINE_PRESETS, MLM_PRESETS, STAGE2_PRESETS, STAGE3_PRESETS):
        registry.pop("mini")


def test_a_registered_preset_and_task_run_through_the_cli(registered, tmp_path):
    rc, out, err = cli("run", "--help")
    assert rc == 0 and "mini" in out
    rc, out, err = cli("eval", "--help")
    assert rc == 0 and "mydev" in out

    rc, out, err = cli("run", "--preset", "mini", "--output-dir", tmp_path / "run")
    assert rc == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["preset"]["name"] == "mini" and report["preset"]["mlm"]["train"]["max_steps"] == 4
    table = report["evaluation"]
    assert set(table) >= {"stage 1", "stage 2", "stage 3", "bm25"}
    # BM25 scores a retrieval task it was never told about, and finds the documents
    assert set(table["bm25"]) == {"mydev"} and table["bm25"]["mydev"] > 0.5
    assert all(0 <= table[f"stage {i}"]["mydev"] <= 1 for i in (1, 2, 3))

    rc, out, err = cli(
        "eval", "--model", tmp_path / "run" / "stage3" / "model", "--task", "mydev",
        "--output", tmp_path / "eval.json",
    )  # fmt: skip
    assert rc == 0, err
    (res,) = json.loads((tmp_path / "eval.json").read_text())
    assert (res["task"], res["n_queries"]) == ("mydev", len(TOPICS))
    assert res["metrics"]["ndcg@10"] == pytest.approx(table["stage 3"]["mydev"])

    rc, out, err = cli("plan", "--preset", "mini", "--gpus", "1", "--gpu", "cpu", "--json")
    assert rc == 0, err
    assert json.loads(out)["stages"][0]["steps"] == 4


def test_a_stage_command_takes_the_registered_preset(registered, tmp_path):
    rc, out, err = cli(
        "mlm", "--preset", "mini", "--output-dir", tmp_path / "s1", "--max-steps", "2"
    )
    assert rc == 0, err
    assert json.loads((tmp_path / "s1" / "preset.json").read_text())["train"]["max_steps"] == 4


def test_unknown_names_are_one_line_naming_the_choices(registered, tmp_path):
    rc, out, err = cli("run", "--preset", "minu", "--output-dir", tmp_path / "r")
    assert rc == 2 and "unknown preset 'minu'; choose one of" in err and "'mini'" in err
    assert len(err.strip().splitlines()) == 1
    rc, out, err = cli("eval", "--model", "bm25", "--task", "mydevv")
    assert rc == 2 and "unknown task 'mydevv'" in err and "mydev" in err


def test_a_registered_loss_trains_stage_2_through_the_cli(tmp_path):
    from nomic_repro.losses import CONTRASTIVE_LOSSES, register_loss, info_nce

    def both_ways(q, d, **kw):
        return info_nce(q, d, symmetric=True, **kw)

    register_loss("both-ways", both_ways)  # one call
    try:
        rc, out, err = cli("mlm", "--preset", "tiny", "--output-dir", tmp_path / "s1",
                           "--max-steps", "1", "--set", "data.limit_docs=50")  # fmt: skip
        assert rc == 0, err
        losses = {}
        for name in ("infonce", "both-ways"):
            rc, out, err = cli(
                "contrastive", "--preset", "tiny", "--init", tmp_path / "s1" / "model",
                "--output-dir", tmp_path / name, "--max-steps", "2",
                "--set", "data.filter_model=null", "--set", "data.limit_per_source=64",
                "--set", f"loss={name}", "--set", "eval_tasks=[]",
            )  # fmt: skip
            assert rc == 0, err
            log = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
            losses[name] = json.loads(log[0])["infonce"]
            assert json.loads((tmp_path / name / "preset.json").read_text())["loss"] == name
        # the same model and batch, another loss: the logged InfoNCE term differs
        assert losses["infonce"] != pytest.approx(losses["both-ways"], rel=1e-6), losses
        rc, out, err = cli(
            "contrastive", "--preset", "tiny", "--init", tmp_path / "s1" / "model",
            "--output-dir", tmp_path / "bad", "--set", "loss=triplet",
        )  # fmt: skip
        assert rc == 2 and "unknown loss 'triplet'; choose one of" in err, err
        assert not (tmp_path / "bad").exists()  # refused before the folder was made
    finally:
        CONTRASTIVE_LOSSES.pop("both-ways")
