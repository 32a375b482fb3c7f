"""`--eval NAME=BEIR_FOLDER` (issue #28, "train on your own data"): `nomic-repro contrastive` and
`finetune` score the --init model on your dev set before training (`eval-before.json`, once) and the
trained model after it (`eval.json`, which keeps both), and print before, after and change; `run`
scores every stage on it, so the report's table has the task for stage 1, 2 and 3. Through the real
command line (`nomic_repro.cli.main`)."""

import json
import pytest
import nomic_repro  # noqa: F401  (first: Triton's CPU interpreter before triton is imported)
from nomic_repro import eval as ev
from _cli import cli, write_beir
from nomic_repro.core import StageDir

STAGE2 = [  # a few fast steps that move the model: no filter model, little data, a large step
    "train.max_steps=3", "train.batch_size=16", "train.lr=1e-3", "train.warmup_steps=1",
    "data.filter_model=null", "data.limit_per_source=48", "eval_tasks=[]",
]  # fmt: skip


def sets(overrides):
    return [a for s in overrides for a in ("--set", s)]


@pytest.fixture(autouse=True)
def tasks_as_they_were():
    "`--eval` registers tasks in this process: each test leaves the registry as it found it."
    before = set(ev.TASKS)
    yield
    for name in set(ev.TASKS) - before:
        ev.TASKS.pop(name)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    "A stage-1 model as `nomic-repro mlm` writes it (one step of the tiny preset)."
    out = tmp_path_factory.mktemp("s1")
    rc, _, err = cli("mlm", "--output-dir", out, "--max-steps", 1, "--set", "data.limit_docs=50")
    assert rc == 0, err
    return out / "model"


def test_contrastive_scores_the_dev_set_before_and_after(stage1, tmp_path):
    dev, out = write_beir(tmp_path / "mydev"), tmp_path / "s2"
    cmd = ["contrastive", "--init", stage1, "--output-dir", out, *sets(STAGE2)]
    rc, stdout, err = cli(*cmd, "--eval", f"devset={dev}")
    assert rc == 0, err
    d = StageDir(out)
    (before,) = json.loads(d.eval_before.read_text())
    (after,) = json.loads(d.eval.read_text())  # the trained model's scores ...
    assert (before["task"], after["task"]) == ("devset", "devset")
    assert after["before"] == before["metrics"]  # ... and the init model's, in one file
    assert after["metrics"] != before["metrics"]  # training moved the model, and its scores
    assert 0 < before["metrics"]["ndcg@10"] < 1  # a task the init model does not solve
    # the table: one row per metric, before, after and change (x100), then the run's JSON line
    for m, b in before["metrics"].items():
        a = after["metrics"][m]
        row = f"| devset | {m} | {100 * b:.2f} | {100 * a:.2f} | {100 * (a - b):+.2f} |"
        assert row in stdout.splitlines(), (row, stdout)
    assert json.loads(stdout.splitlines()[-1])["end_step"] == 3

    # again: a resume of the finished run; the init model is not scored again
    stamp = d.eval_before.stat().st_mtime_ns
    rc, stdout2, err = cli(*cmd, "--eval", f"devset={dev}")
    assert rc == 0, err
    assert d.eval_before.stat().st_mtime_ns == stamp
    res = json.loads(stdout2.splitlines()[-1])
    assert (res["start_step"], res["end_step"]) == (3, 3)
    assert [l for l in stdout2.splitlines() if "| devset |" in l] == [
        l for l in stdout.splitlines() if "| devset |" in l
    ]


def test_finetune_takes_eval_too(stage1, tmp_path):
    dev, out = write_beir(tmp_path / "mydev"), tmp_path / "s3"
    small = ["train.max_steps=1", "train.batch_size=8", "data.limit=16", "data.mine_max_length=64"]
    rc, stdout, err = cli(
        "finetune", "--init", stage1, "--output-dir", out, "--eval", f"devset={dev}",
        *sets([*small, "eval_tasks=[]"]),
    )  # fmt: skip
    assert rc == 0, err
    (after,) = json.loads(StageDir(out).eval.read_text())
    assert set(after["before"]) == set(after["metrics"]) == set(ev.METRICS)
    assert "| devset | ndcg@10 |" in stdout


@pytest.mark.parametrize("command", ["contrastive", "finetune", "run"])
def test_bad_specs_fail_in_one_line(stage1, tmp_path, command):
    dev = write_beir(tmp_path / "mydev")
    (tmp_path / "empty").mkdir()
    init = ["--init", stage1] if command != "run" else []
    out = tmp_path / "out"
    for spec, msg in [
        (str(dev), "give NAME=BEIR_FOLDER"),
        (f"=  {dev}", "give NAME=BEIR_FOLDER"),
        ("devset=", "give NAME=BEIR_FOLDER"),
        (f"devset={tmp_path / 'absent'}", "no such task folder"),
        (f"devset={tmp_path / 'empty'}", "is not a BEIR folder"),
        (f"scifact={dev}", "task 'scifact' exists with another folder"),
    ]:
        rc, stdout, err = cli(command, *init, "--output-dir", out, "--eval", spec)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, (spec, err)
        assert "Traceback" not in err and not out.exists()  # refused before any work
    # two folders under one name
    (tmp_path / "other").mkdir()
    other = write_beir(tmp_path / "other" / "mydev")
    rc, _, err = cli(
        command, *init, "--output-dir", out, "--eval", f"devset={dev}", "--eval", f"devset={other}"
    )
    assert rc == 2 and "task 'devset' exists with another folder" in err


def test_run_scores_every_stage_on_the_dev_set(tmp_path, monkeypatch):
    """`run --eval`: the task joins the tasks of every stage's scoring and the report's table. The
    stages are not trained and the scorer is a stand-in (the tiny pipeline takes minutes)."""
    import nomic_repro.pipeline as pl

    scored = {}

    def fake_scores(model, tasks, out):
        scored[out.name] = list(tasks)
        return {t: {"stage1": 0.1, "stage2": 0.2, "stage3": 0.3}[out.name] for t in tasks}

    monkeypatch.setattr(pl, "_train_stages", lambda *a: [])
    monkeypatch.setattr(pl, "_scores", fake_scores)
    dev = write_beir(tmp_path / "mydev")
    rc, stdout, err = cli(
        "run", "--output-dir", tmp_path / "run", "--eval", f"devset={dev}",
        *sets(["baselines=[]", "long_context=[]"]),
    )  # fmt: skip
    assert rc == 0, err
    assert scored == {f"stage{i}": ["scifact", "stsb", "devset"] for i in (1, 2, 3)}
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["preset"]["eval_tasks"] == ["scifact", "stsb", "devset"]
    assert {k: v["devset"] for k, v in report["evaluation"].items() if "devset" in v} == {
        "stage 1": 0.1, "stage 2": 0.2, "stage 3": 0.3,
    }  # fmt: skip
    head = stdout.splitlines()[0]
    assert head.startswith("| model |") and "| devset |" in head  # the printed table has it
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<th>devset</th>" in page and "<td>30.00</td>" in page
