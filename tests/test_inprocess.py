"""The in-process runner (tests/inprocess.py) the training tests rely on: a run through it is the run a
fresh process makes (same weights bit for bit, same console lines, same exit statuses), and it leaves
the test process as it found it."""

import json
import logging
import os
import subprocess
import sys
import warnings

import torch
from conftest import ROOT
from inprocess import run_main, run_training
from test_train import FAST


def console(text: str, out) -> list[str]:
    """The run's lines, its output folder written as OUT (the progress bar is on stderr)."""
    return [x.replace(str(out), "OUT") for x in text.splitlines()]


def test_a_run_in_this_process_is_the_run_of_a_fresh_process(tmp_path):
    from safetensors.torch import load_file

    from nerforge.sample_corpus import write_corpus

    write_corpus(tmp_path / "corpus", seed=3, sizes=(("train", 24), ("valid", 8), ("test", 8)))
    args = ["--data_dir", str(tmp_path / "corpus"), *FAST, "--max_steps", "3", "--eval_steps", "2"]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    fresh = subprocess.run(
        [sys.executable, "train_accelerate.py", *args, "--output_dir", str(tmp_path / "fresh")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    threads, environ = torch.get_num_threads(), dict(os.environ)
    # a bf16 run first: accelerate's process-wide state must not carry its precision into the next run
    bf16 = run_training(*args, "--output_dir", tmp_path / "bf16", env={"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert bf16.returncode == 0 and "precision bf16" in bf16.stdout
    here = run_training(*args, "--output_dir", tmp_path / "here")
    assert here.returncode == 0, here.stderr[-3000:]
    assert console(here.stdout, tmp_path / "here") == console(fresh.stdout, tmp_path / "fresh")
    for name in ("model/model.safetensors", "checkpoints/step-000003/model.safetensors"):
        a, b = load_file(tmp_path / "here" / name), load_file(tmp_path / "fresh" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ours, theirs = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("here", "fresh"))
    timings = {k for k in theirs if k.startswith("train_") and k.endswith("_s")}
    assert timings and {k: v for k, v in ours.items() if k not in timings} == {
        k: v for k, v in theirs.items() if k not in timings
    }
    # the same exit status and one error line as the process for bad input
    bad = run_training(*args, "--output_dir", tmp_path / "here")  # exists: not overwritten
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "--overwrite-output-dir" in bad.stderr
    assert (torch.get_num_threads(), dict(os.environ)) == (threads, environ)


def test_what_a_process_would_print_is_captured_and_the_test_process_left_alone():
    def main(argv):
        print("out", argv)
        print("err", file=sys.stderr)
        logging.getLogger("somelib").warning("a library's warning")  # logging's last resort: stderr
        warnings.warn("twice from one line", UserWarning, stacklevel=1)
        if argv == ["boom"]:
            raise RuntimeError("unexpected")
        raise SystemExit(argv[0] if argv[0] != "3" else 3)

    root = logging.getLogger()
    before = (list(root.handlers), root.level, os.getcwd(), os.umask(0o077))
    os.umask(before[3])
    for _ in range(2):  # warnings once per location per process, as in a fresh one each time
        p = run_main(main, ["3"], env={"NERFORGE_PROBE": "1"}, cwd=ROOT / "tests")
        assert (p.returncode, p.stdout) == (3, "out ['3']\n")
        assert p.stderr.splitlines()[0] == "err" and "a library's warning" in p.stderr
        assert p.stderr.count("UserWarning: twice from one line") == 1
    p = run_main(main, ["boom"])
    assert p.returncode == 1 and "Traceback" in p.stderr and "RuntimeError: unexpected" in p.stderr
    p = run_main(main, ["x"])  # SystemExit("x"): Python prints it and exits 1
    assert p.returncode == 1 and p.stderr.splitlines()[-1] == "x"
    assert "NERFORGE_PROBE" not in os.environ
    assert (list(root.handlers), root.level, os.getcwd(), os.umask(0o022)) == before
    os.umask(before[3])
