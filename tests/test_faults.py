"""Run folders against careless use, through the installed console script: a second process on a folder that a
run holds is refused (and nothing it would have written appears), a folder holding someone else's files is never
taken over, and both errors are one line with exit code 2."""

import os, signal, subprocess, sys, time
from pathlib import Path
import pytest

SCRIPT = Path(sys.executable).parent / "nomic-repro"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason=f"no console script at {SCRIPT}")
MLM = [
    "mlm",
    "--preset",
    "tiny",
    "--set",
    "data.limit_docs=64",
    "--set",
    "train.batch_size=4",
    "--set",
    "model.num_layers=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def one_line_error(r, msg):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr


def test_a_second_process_on_a_held_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [str(SCRIPT), *MLM, "--output-dir", str(out)],
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.time()
        while not (out / "metrics.jsonl").exists():  # the first one is training
            assert first.poll() is None and time.time() - t0 < 300, (
                "the first run never started training"
            )
            time.sleep(0.05)
        second = subprocess.run(
            [str(SCRIPT), *MLM, "--output-dir", str(out)], env=ENV, capture_output=True, text=True
        )
        one_line_error(second, f"is in use by another process (pid {first.pid})")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the kernel drops a dead process's lock: the folder resumes
    done = len((out / "metrics.jsonl").read_text().splitlines())
    r = subprocess.run(
        [str(SCRIPT), *MLM, "--max-steps", str(done + 1), "--output-dir", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_folder_of_someone_elses_files_is_not_taken_over(tmp_path):
    out = tmp_path / "mine"
    (out / "model").mkdir(parents=True)
    (out / "model" / "model.safetensors").write_bytes(b"my weights")
    (out / "notes.txt").write_text("notes")
    r = subprocess.run(
        [str(SCRIPT), *MLM, "--output-dir", str(out)], env=ENV, capture_output=True, text=True
    )
    one_line_error(r, "holds files of something else (model, notes.txt) and no run")
    assert (out / "model" / "model.safetensors").read_bytes() == b"my weights"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "model",
        "notes.txt",
    ]


def test_resuming_on_other_data_is_refused(tmp_path):
    "The loss jumped 7.24 -> 10.84 when a run resumed with another --data-root; now the difference is named."
    import gzip

    out, other = tmp_path / "run", tmp_path / "other" / "mlm"
    r = subprocess.run(
        [str(SCRIPT), *MLM, "--max-steps", "1", "--output-dir", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    other.mkdir(parents=True)
    with gzip.open(other / "wikipedia.jsonl.gz", "wt") as f:
        f.writelines(
            '{"text": "another corpus, line %d, with a few more words in it"}\n' % i
            for i in range(200)
        )
    r = subprocess.run(
        [
            str(SCRIPT),
            *MLM,
            "--max-steps",
            "2",
            "--data-root",
            str(tmp_path / "other"),
            "--output-dir",
            str(out),
        ],
        env=ENV,
        capture_output=True,
        text=True,
    )
    one_line_error(r, "was trained on other data: source 'mlm/wikipedia.jsonl.gz'")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # nothing was trained on it
