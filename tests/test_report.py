"""python -m nerforge.report end to end on the quick-start export: the files, the counting identities,
errors for annotators, conlleval-readable predictions, an extra (relabelled) test set, bad input."""

import json

import pytest
from conftest import SAMPLE_DIR, read_tagged_conll

from nerforge.cli.report import main
from nerforge.metric import score
from nerforge.taxonomy import KINDS


@pytest.fixture(scope="module")
def export(quickstart_export):
    return quickstart_export


def run_report(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, *capsys.readouterr()


@pytest.fixture(scope="module")
def report(export, tmp_path_factory):
    """The report with an extra test set whose labels are our own predictions on test (so every
    prediction that was wrong becomes right)."""
    tmp = tmp_path_factory.mktemp("report")
    first = tmp / "first"
    assert main(["--model", str(export), "--data-dir", str(SAMPLE_DIR), "--output-dir", str(first)]) == 0
    _, _, pred = read_tagged_conll(first / "predictions.conll")
    relabelled = tmp / "relabelled.txt"
    flat = iter([t for sent in pred for t in sent])
    lines = []
    for line in (SAMPLE_DIR / "test.txt").read_text(encoding="utf-8").split("\n"):
        f = line.split()
        if f and f[0] != "-DOCSTART-":
            line = " ".join([*f[:-1], next(flat)])
        lines.append(line)
    relabelled.write_text("\n".join(lines), encoding="utf-8")
    out = tmp / "r"
    args = ["--model", str(export), "--data-dir", str(SAMPLE_DIR), "--output-dir", str(out)]
    assert main([*args, "--extra-test", str(relabelled)]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_exact_files_and_counting_identities(report):
    out, r = report
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "errors.jsonl",
        "predictions.conll",
        "reliability.png",
        "report.json",
        "report.md",
        "slices.png",
    ]
    assert r["words_unscored"] == 0 and r["main"]["num_words"] == sum(
        1
        for line in (SAMPLE_DIR / "test.txt").read_text().split("\n")
        if line.split() and line.split()[0] != "-DOCSTART-"
    )
    for errors, n_gold, n_pred in [(r["errors"], r["gold_entities"], r["predicted_entities"])] + [
        (x["errors"], x["gold_entities"], x["predicted_entities"]) for x in r["extra_tests"].values()
    ]:
        c = errors["overall"]
        assert c["correct"] + c["type"] + c["boundary"] + c["boundary_type"] + c["missed"] == n_gold
        assert c["correct"] + c["type"] + c["boundary"] + c["boundary_type"] + c["spurious"] == n_pred
    conll = r["main"]["scores"]["conlleval"]
    assert conll["num_words"] == r["main"]["num_words"] and 0 < conll["f1"] <= 1
    assert set(r["main"]["slices"]) == {"entity_length", "casing", "sentence_length", "seen_in_train"}
    assert sum(v["support"] for v in r["main"]["slices"]["entity_length"].values()) == r["gold_entities"]
    assert [t["min_score"] for t in r["main"]["thresholds"]][0] == 0.5
    assert r["calibration"]["fitted_on"] == "validation"  # the export's own calibration, carried over
    total = sum(n for row in r["main"]["confusion"].values() for n in row.values())
    assert total == sum(r["errors"]["overall"].values())


def test_errors_for_annotators_and_conlleval_readable_predictions(report):
    out, r = report
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == sum(v for k, v in r["errors"]["overall"].items() if k != "correct")
    assert [e["confidence"] for e in errors] == sorted((e["confidence"] for e in errors), reverse=True)
    assert all(e["kind"] in KINDS and e["kind"] != "correct" and e["words"] for e in errors)
    widths, gold, pred = read_tagged_conll(out / "predictions.conll")
    assert widths == {3}
    assert score(gold, pred) == r["main"]["scores"]["conlleval"]


def test_relabelled_test_set_side_by_side(report):
    _, r = report
    (extra,) = r["extra_tests"].values()
    assert extra["scores"]["conlleval"]["f1"] == 1.0  # its labels are our predictions
    wrong = r["predicted_entities"] - r["errors"]["overall"]["correct"]
    assert extra["against_main"]["predictions_wrong_then_right"] == wrong
    assert extra["against_main"]["predictions_right_then_wrong"] == 0


def test_bad_input_exit_2_and_nothing_written(export, capsys, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART- -X- -X- O\n\nMara NNP I-NP B-PER\nsaid VBD I-VP B-FOO\n", encoding="utf-8")
    out = tmp_path / "r"
    code, _, err = run_report(
        capsys, "--model", export, "--data-dir", SAMPLE_DIR, "--output-dir", out, "--extra-test", bad
    )
    assert code == 2 and f"{bad}:4" in err and "B-FOO" in err and not out.exists()
    assert not list(tmp_path.glob(".r.*"))
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("train.txt", "valid.txt"):
        (empty / name).write_text((SAMPLE_DIR / name).read_text())
    (empty / "test.txt").write_text("\n")
    code, _, err = run_report(capsys, "--model", export, "--data-dir", empty, "--output-dir", out)
    assert code == 2 and "test.txt" in err and not out.exists()
    from nerforge.modeling import build_tiny_bert

    other = build_tiny_bert(["Mara"], ["O", "B-FOO", "I-FOO"], tmp_path / "other")
    code, _, err = run_report(capsys, "--model", other, "--data-dir", SAMPLE_DIR, "--output-dir", out)
    assert code == 2 and "FOO" in err and not out.exists()


def test_update_card_adds_where_it_fails_and_the_extra_test_to_the_model_index(export, report, tmp_path, capsys):
    import shutil

    from huggingface_hub import ModelCard

    copy = tmp_path / "model"
    shutil.copytree(export, copy)
    relabelled = next(report[0].parent.glob("relabelled.txt"))
    args = ["--model", copy, "--data-dir", SAMPLE_DIR, "--output-dir", tmp_path / "r", "--extra-test", relabelled]
    code, _, err = run_report(capsys, *args, "--update-card")
    assert code == 0, err
    card = ModelCard.load(copy / "README.md")
    extra = [r for r in card.data.eval_results if r.dataset_type == "relabelled"]
    assert {r.metric_type for r in extra} == {"precision", "recall", "f1"}
    assert [r.metric_value for r in extra if r.metric_type == "f1"] == [1.0]
    assert {r.dataset_split for r in card.data.eval_results} == {"validation", "test"}
    assert "## Where it fails" in card.text and "On relabelled (the same test sentences" in card.text
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["report"]["errors"] == json.loads((tmp_path / "r" / "report.json").read_text())["errors"]["overall"]
    assert metrics["calibration"]  # the rest of metrics.json is kept
