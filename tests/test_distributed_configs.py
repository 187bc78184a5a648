"""FSDP and DeepSpeed configs never run as something else in silence; fractions of the run for
evaluation and checkpoints, so that a run on many GPUs still evaluates and checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from nerforge.config import ConfigError, steps_between
from nerforge.training import describe_distribution, distribution_mismatch


def test_a_sharded_launch_that_got_something_else_is_named():
    assert distribution_mismatch({}, "MULTI_GPU", "cuda") is None
    assert distribution_mismatch({"ACCELERATE_USE_FSDP": "true"}, "FSDP", "cuda") is None
    assert distribution_mismatch({"ACCELERATE_USE_DEEPSPEED": "true"}, "DEEPSPEED", "cuda") is None
    assert distribution_mismatch({"ACCELERATE_USE_FSDP": "false"}, "MULTI_CPU", "cpu") is None
    msg = distribution_mismatch({"ACCELERATE_USE_FSDP": "true"}, "MULTI_CPU", "cpu")
    assert msg.startswith("the launch asked for FSDP (ACCELERATE_USE_FSDP) but accelerate set up MULTI_CPU on cpu")
    msg = distribution_mismatch({"ACCELERATE_USE_DEEPSPEED": "1"}, "NO", "cpu")
    assert "asked for DEEPSPEED" in msg and "set up NO" in msg


def test_the_startup_summary_says_what_the_model_was_wrapped_in():
    import torch

    class DTensor(torch.nn.Parameter):  # what FSDP2 turns a sharded parameter into, by name
        pass

    model = torch.nn.Linear(2, 2)
    assert describe_distribution(model, "NO", 1) == "NO: one process (Linear)"
    assert describe_distribution(model, "MULTI_GPU", 4) == "MULTI_GPU: Linear over 4 processes"
    assert describe_distribution(model, "FSDP", 2).startswith("FSDP: 0 of 2 parameter tensors sharded")
    model.weight = DTensor(model.weight.data)
    assert describe_distribution(model, "FSDP", 2).startswith("FSDP: 1 of 2 parameter tensors sharded")

    class Engine(torch.nn.Module):
        def zero_optimization_stage(self):
            return 2

    assert describe_distribution(Engine(), "DEEPSPEED", 8) == "DEEPSPEED: ZeRO stage 2 over 8 process(es)"


def test_the_fsdp_config_on_a_machine_without_gpus_stops_before_training(tmp_path):
    """accelerate launch with configs/accelerate/fsdp.yaml on this CPU: without the check it trains as a
    one-process run; with it the run stops at once with one line naming what it got."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/fsdp.yaml"]
    cmd += ["--num_processes", "1", "train_accelerate.py", "--config", "quickstart", "--output-dir", str(out)]
    cmd += ["--report-to", "none", "--max-steps", "2"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: the launch asked for FSDP (ACCELERATE_USE_FSDP) but accelerate set up NO on cpu; FSDP needs GPUs "
        "(accelerate runs it as NO elsewhere): launch without that config, e.g. --config_file "
        "configs/accelerate/cpu-2proc.yaml"
    ]
    assert not (out / "checkpoints").exists() and not (out / "model").exists()


def test_steps_between_takes_steps_or_a_fraction_of_the_run():
    assert steps_between(0, 400, 80) == 80  # 0: once an epoch
    assert steps_between(500, 400, 80) == 500
    assert steps_between(0.2, 400, 80) == 80  # 5 evaluations
    assert steps_between(0.2, 7, 3) == 2  # rounded up
    assert steps_between(0.001, 10, 3) == 1  # at least one step


def test_steps_must_be_whole_or_a_fraction(tmp_path):
    from nerforge.cli.train import parse_config

    assert parse_config(["--eval-steps", "0.25", "--save-steps", "0.25"]).training.eval_steps == 0.25
    assert parse_config(["--eval-steps", "500"]).training.eval_steps == 500
    with pytest.raises(ConfigError, match=r"training.eval_steps: expected a whole number of steps or a fraction"):
        parse_config(["--eval-steps", "2.5"])
    with pytest.raises(ConfigError, match="training.logging_steps"):
        parse_config(["--logging-steps", "0"])


@pytest.mark.parametrize("name", ["bert-base-cased", "bert-large-cased"])
def test_the_bert_configs_evaluate_and_checkpoint_at_least_4_times_at_any_process_count(name):
    """configs/accelerate/multi-gpu.yaml runs 8 processes: about 400 optimizer steps for 5 epochs of
    bert-large-cased's packed windows. At 1, 8 and 64 processes the configs still evaluate and
    checkpoint at least 4 times."""
    from nerforge.cli.train import parse_config

    t = parse_config(["--config", name]).training
    # CoNLL-2003 train in packed windows like the BERT configs' (computed once from the real data)
    train_windows = json.loads((ROOT / "bench" / "conll2003_shapes.json").read_text())["train"]["packed"]["windows"]
    for processes in (1, 8, 64):
        per_epoch = -(-train_windows // (t.per_device_train_batch_size * processes * t.gradient_accumulation_steps))
        max_steps = int(t.num_train_epochs * per_epoch)
        for value in (t.eval_steps, t.save_steps):
            every = steps_between(value, max_steps, per_epoch)
            assert -(-max_steps // every) >= 4, (processes, value, max_steps, every)
