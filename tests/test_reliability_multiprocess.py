"""Two CPU processes (gloo) against one, on the same weights: every sentence evaluated once (no
duplicates or drops at an uneven tail) and identical metrics; and a 2-process training run that
completes and exports. Launchers: plain torchrun, and (slow) `accelerate launch --config_file
configs/accelerate/cpu-2proc.yaml`. Every multi-process run must exit 0 without a traceback."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest
from conftest import NER, ROOT
from reliability_report import record

pytestmark = pytest.mark.multiprocess

SIZES = {"train": 16, "valid": 41, "test": 43}
EVAL_BATCH = 4  # 41 and 43 sentences over 2 processes x 4: the last round is uneven
COMMON = [
    "--evaluate_pipeline",
    "false",
    "--max_length",
    "64",
    "--stride",
    "8",
    "--report_to",
    "none",
    "--per_device_eval_batch_size",
    str(EVAL_BATCH),
    "--per_device_train_batch_size",
    "4",
    "--logging_steps",
    "1",
]
FIGURES: dict = {}
EXITS: list = []  # every launched run whose outputs were judged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two_processes() -> list[str]:
    """The command line that starts train_accelerate.py as 2 processes under torchrun (its arguments follow)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(ROOT / "train_accelerate.py"),
    ]


def launch(cmd, out, check=True, use_cpu=False):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        env.pop("ACCELERATE_USE_CPU", None)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    if not check:
        return None, p
    assert p.returncode == 0 and "Traceback" not in p.stderr, (
        f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    )
    EXITS.append(p)
    return json.loads((out / "metrics.json").read_text()), p


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from nerforge.modeling import build_tiny_bert
    from nerforge.sample_corpus import write_corpus

    tmp = tmp_path_factory.mktemp("mp")
    write_corpus(tmp / "corpus", seed=3, sizes=tuple(SIZES.items()))
    words = [
        line.split()[0]
        for name in SIZES
        for line in (tmp / "corpus" / f"{name}.txt").read_text().splitlines()
        if line.strip()
    ]
    init = build_tiny_bert(words, NER, tmp / "init", seed=7)
    return tmp, init


def eval_args(setup, out):
    tmp, init = setup
    return [
        "--data_dir",
        str(tmp / "corpus"),
        "--output_dir",
        str(out),
        "--model_name_or_path",
        str(init),
        "--max_steps",
        "0",
        *COMMON,
    ]


@pytest.fixture(scope="module")
def one_process(setup):
    out = setup[0] / "one"
    return launch([sys.executable, str(ROOT / "train_accelerate.py"), *eval_args(setup, out)], out)


def _compare(a, b, path="") -> int:
    """Exact equality (floats to 1e-9); returns the number of leaf fields compared."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        return sum(_compare(a[k], b[k], f"{path}.{k}") for k in a)
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), (path, a, b)
        return 1
    assert a == b, (path, a, b)
    return 1


def check_equal(one, two) -> int:
    n = 0
    for split, size in (("validation", SIZES["valid"]), ("test", SIZES["test"])):
        m1, m2 = dict(one[split]), dict(two[split])
        assert m1["num_sentences"] == m2["num_sentences"] == size  # no duplicates, no drops
        # the mean loss depends on how windows are batched per process; everything scored is compared
        m1.pop("loss"), m2.pop("loss")
        n += _compare(m1, m2, split)
    return n


def test_torchrun_two_processes_equal_one(setup, one_process):
    out = setup[0] / "torchrun"
    two, p = launch(
        [
            *torchrun_two_processes(),
            *eval_args(setup, out),
        ],
        out,
    )
    assert two["num_processes"] == 2 and one_process[0]["num_processes"] == 1
    assert one_process[0]["validation"]["num_words"] == sum(
        len(line.split()) > 0
        for line in (setup[0] / "corpus" / "valid.txt").read_text().splitlines()
        if not line.startswith("-DOCSTART-")
    )
    FIGURES["torchrun"] = check_equal(one_process[0], two)
    FIGURES["sentences"] = {s: two[s]["num_sentences"] for s in ("validation", "test")}


@pytest.mark.slow
def test_accelerate_launch_two_processes_equal_one(setup, one_process):
    out = setup[0] / "accelerate"
    two, p = launch(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ROOT / "configs" / "accelerate" / "cpu-2proc.yaml"),
            "--main_process_port",
            str(free_port()),
            str(ROOT / "train_accelerate.py"),
            *eval_args(setup, out),
        ],
        out,
    )
    assert two["num_processes"] == 2  # not one process silently (MULTI_CPU without mpirun)
    FIGURES["accelerate launch"] = check_equal(one_process[0], two)


def test_two_process_training_completes_and_exports(setup):
    tmp, init = setup
    out = tmp / "train2"
    metrics, p = launch(
        [
            *torchrun_two_processes(),
            "--data_dir",
            str(tmp / "corpus"),
            "--output_dir",
            str(out),
            "--model_name_or_path",
            str(init),
            "--max_steps",
            "3",
            "--eval_steps",
            "3",
            "--save_steps",
            "3",
            *COMMON,
        ],
        out,
    )
    assert metrics["num_processes"] == 2 and metrics["effective_batch_size"] == 8
    assert [h["step"] for h in metrics["history"] if "loss" in h] == [1, 2, 3]
    assert all(math.isfinite(h["loss"]) for h in metrics["history"] if "loss" in h)
    for split, size in (("validation", SIZES["valid"]), ("test", SIZES["test"])):
        assert metrics[split]["num_sentences"] == size
    from nerforge.hub import check_export_dir

    check_export_dir(out / "model")
    assert (out / "checkpoints" / "step-000003" / "trainer_state.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints" / "step-000003").glob("random_states_*.pkl")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    FIGURES["training"] = "torchrun 2 processes, 3 steps: exit 0, checkpoint + export complete"


def test_sparse_embedding_updates_refuse_two_processes(setup):
    tmp, init = setup
    out = tmp / "sparse2"
    _, p = launch(
        [
            *torchrun_two_processes(),
            "--data_dir",
            str(tmp / "corpus"),
            "--output_dir",
            str(out),
            "--model_name_or_path",
            str(init),
            "--max_steps",
            "1",
            "--sparse_embedding_updates",
            "true",
            *COMMON,
        ],
        out,
        check=False,
    )
    assert p.returncode != 0 and "sparse_embedding_updates is implemented for a single process" in p.stderr
    assert "(2 process(es)" in p.stderr
    # torchrun itself reports the failed children with a traceback of its own; ours exit with a message
    assert 'train_accelerate.py", line' not in p.stderr and not (out / "checkpoints").exists()


def test_zz_record_multiprocess_figures():
    if not {"torchrun", "training"} <= set(FIGURES):
        pytest.skip("the multi-process tests did not all pass in this session")
    launchers = [k for k in ("torchrun", "accelerate launch") if k in FIGURES]
    assert all(p.returncode == 0 for p in EXITS)
    record(
        "multiprocess",
        sentences=FIGURES["sentences"],
        eval_batch=f"{EVAL_BATCH} per process",
        equal_fields=sum(FIGURES[k] for k in launchers),
        launchers=launchers,
        training_run=FIGURES["training"],
    )
