"""nerforge.calibrate's pure parts: the temperature fit, the expected calibration error, folding."""

import math

import pytest
import torch

from nerforge.calibration import ece, fit_temperature, fold_temperature, nll, reliability_bins, split_calibration


def test_fit_recovers_the_temperature_that_generated_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20000, 5, generator=g)
    for true_t in (0.5, 2.0):
        labels = torch.multinomial((logits / true_t).softmax(-1), 1, generator=g).squeeze(-1)
        t = fit_temperature(logits, labels)
        assert t == pytest.approx(true_t, rel=0.05)
        assert nll(logits, labels, t) <= min(nll(logits, labels, t * 1.1), nll(logits, labels, t / 1.1))


def test_ece_by_hand():
    # bin [0.8, 0.867): 2 predictions at 0.8, one right (accuracy 0.5): |0.5 - 0.8| = 0.3
    # bin [0.933, 1]: 2 at 1.0, both right: 0
    assert ece([0.8, 0.8, 1.0, 1.0], [True, False, True, True]) == pytest.approx(0.5 * 0.3)
    bins = reliability_bins([0.8, 0.8, 1.0, 1.0], [True, False, True, True])
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4 and bins[-1]["accuracy"] == 1.0
    assert ece([], []) == 0.0


def test_split_figures_words_and_entities():
    names = {0: "O", 1: "B-PER", 2: "I-PER"}
    # word 1: B-PER (prob high), word 2: I-PER, word 3: O; gold PER spans words 1-2 -> entity right
    z = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    out = split_calibration([z], [["B-PER", "I-PER", "O"]], names)
    assert out["word"]["accuracy"] == 1.0 and out["word"]["words"] == 3
    assert out["entity"]["entities"] == 1 and out["entity"]["precision"] == 1.0
    conf = z.softmax(-1).max(-1).values[:2].mean().item()
    assert out["entity"]["mean_confidence"] == pytest.approx(conf)
    assert out["word"]["nll"] == pytest.approx(nll(z, torch.tensor([1, 2, 0])))
    wrong = split_calibration([z], [["B-PER", "O", "O"]], names)
    assert wrong["entity"]["precision"] == 0.0 and wrong["word"]["accuracy"] == pytest.approx(2 / 3)


def test_fold_divides_the_classifier():
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    model = BertForTokenClassification(
        BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    ).eval()
    ids = torch.tensor([[2, 7, 9, 3]])
    before = model(input_ids=ids).logits
    fold_temperature(model, 2.5)
    after = model(input_ids=ids).logits
    assert torch.allclose(before / 2.5, after, atol=1e-6) and torch.equal(before.argmax(-1), after.argmax(-1))
    model.classifier = torch.nn.Sequential(torch.nn.Linear(32, 2))
    with pytest.raises(ValueError, match="classifier"):
        fold_temperature(model, 2.0)
    assert math.isfinite(nll(before[0], torch.tensor([0, 1, 0, 1])))


def test_calibrate_command_rewrites_an_uncalibrated_export(tmp_path, capsys):
    import json

    from conftest import SAMPLE_DIR
    from inprocess import run_training
    from safetensors.torch import load_file

    from nerforge.cli.calibrate import main

    out = tmp_path / "run"
    p = run_training("--config", "configs/quickstart.yaml", "--output_dir", out, "--report_to", "none",
                     "--max_steps", "15", "--calibrate", "false", "--evaluate_pipeline", "false")  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    export = out / "model"
    assert "calibration" not in json.loads((export / "metrics.json").read_text())
    before = load_file(export / "model.safetensors")["classifier.weight"]
    from nerforge.backends import resolve
    from nerforge.cli import verify

    assert verify.main(["--model", str(export), "--data-dir", str(SAMPLE_DIR), "--paths", "torch"]) == 0
    capsys.readouterr()
    assert main(["--model", str(export), "--data-dir", str(SAMPLE_DIR)]) == 0
    printed = capsys.readouterr().out
    assert "calibrated" in printed and f"rerun nerforge verify --model {export}" in printed
    # the record timed the old weights: auto no longer trusts it (and says why) until verify runs again
    assert "torch: files changed since verified" in resolve(str(export), "auto").reason
    cal = json.loads((export / "metrics.json").read_text())["calibration"]
    after = load_file(export / "model.safetensors")["classifier.weight"]
    assert cal["temperature"] != 1.0 and torch.allclose(before / cal["temperature"], after)
    assert (export / "calibration.png").is_file() and "### Confidence scores" in (export / "README.md").read_text()
    assert not list(tmp_path.rglob(".model.*"))  # no temporary folder left
    assert main(["--model", str(tmp_path), "--data-dir", str(SAMPLE_DIR)]) == 2  # not an export
    assert "not an export written by nerforge training" in capsys.readouterr().err
