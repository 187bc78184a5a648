"""The `nerforge` command: every subcommand's parser walked for the option convention, help with defaults
and examples, one exit-status table, progress bars only on a terminal, bundled configs by name."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys

import pytest
from conftest import NER, ROOT

from nerforge.cli import COMMANDS, build_parser, command_parser, main
from nerforge.cli.common import EXIT_STATUS, EXIT_STATUS_TEXT, Progress, shown_option_strings

KEBAB = re.compile(r"^--[a-z0-9]+(-[a-z0-9]+)*$")
READS_A_MODEL = ("predict", "score", "report", "calibrate", "onnx", "push")
SHOWS_PROGRESS = ("predict", "score", "report", "calibrate", "onnx")
# one name per concept: spellings that must not be shown by any command (they are hidden aliases or gone)
NOT_SHOWN = {"--output-json", "--document-context", "--private", "--quantize", "--commit-message", "--export-dir"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from nerforge.modeling import build_tiny_bert

    words = ["EU", "rejects", "German", "Peter", "Mara", "said", "."]
    return build_tiny_bert(words, NER, tmp_path_factory.mktemp("tiny") / "model", seed=0)


def all_parsers():
    """(name, parser) for every subcommand and sub-subcommand."""
    for name in COMMANDS:
        p = command_parser(name)
        yield name, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, sp in action.choices.items():
                    yield f"{name} {sub}", sp


def shown_options(parser) -> list[str]:
    """The long option strings --help shows (aliases hidden); each is checked against the help text."""
    out = []
    help_text = parser.format_help()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        out += [o for o in shown_option_strings(action) if o.startswith("--")]
    assert all(re.search(rf"{o}\b", help_text) for o in out)
    return out


def test_top_level_help_lists_every_subcommand_with_one_line():
    text = build_parser().format_help()
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", text, re.M) or re.search(rf"^\s+{name}\n\s+\S", text, re.M), name
    assert EXIT_STATUS_TEXT.split(";")[0] in " ".join(text.split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_also_python_m(name):
    """README: each command is also `python -m nerforge.COMMAND` (a shim naming itself in the usage line)."""
    shim = ROOT / "nerforge" / f"{name}.py"
    assert shim.is_file(), f"no {shim.name}: python -m nerforge.{name} would not run"
    assert f'prog="python -m nerforge.{name}"' in shim.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_long_option_is_kebab_case_and_has_help(name):
    for label, parser in all_parsers():
        if not label.startswith(name):
            continue
        for option in shown_options(parser):
            assert KEBAB.match(option), f"nerforge {label}: {option} is not kebab-case"
            assert option not in NOT_SHOWN, f"nerforge {label} shows {option}"
        text = parser.format_help()
        assert not [o for o in NOT_SHOWN if re.search(rf"{o}\b", text)], f"nerforge {label}"
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"nerforge {label}: {action.option_strings} has no help"


def test_the_same_concept_has_the_same_name_everywhere():
    """Options with one destination have one spelling in every command (e.g. max_length is --max-length)."""
    spellings: dict[str, set] = {}
    for label, parser in all_parsers():
        for action in parser._actions:
            shown = [o for o in action.option_strings if o.startswith("--") and "_" not in o]
            if shown and action.help != argparse.SUPPRESS:
                key = (action.dest, isinstance(action, argparse._StoreFalseAction))  # --no-X turns X off
                spellings.setdefault(key, set()).add((shown[0], label))
    for dest, seen in spellings.items():
        assert len({s for s, _ in seen}) == 1, f"{dest} is spelled {sorted(seen)}"
    assert "--revision" in shown_options(command_parser("train"))  # the encoder's revision: training only
    for name in COMMANDS:
        if name != "train":
            assert "--revision" not in shown_options(command_parser(name)), name


@pytest.mark.parametrize("name", READS_A_MODEL)
def test_a_model_is_always_given_with_model(name):
    parser = command_parser(name)
    model = next(a for a in parser._actions if "--model" in a.option_strings)
    assert model.required
    assert not [a for a in parser._actions if not a.option_strings and a.dest not in ("help", "input")]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_has_a_description_defaults_and_examples(name):
    text = command_parser(name).format_help()
    parser = command_parser(name)
    assert parser.description and len(parser.description) > 60
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert 1 <= len(examples) <= 5 and all(
        e.strip().startswith(("nerforge ", "accelerate ", "echo ")) for e in examples
    )
    assert "exit status: 0 done; 1" in " ".join(text.split())
    every = "".join(p.format_help() for label, p in all_parsers() if label.split()[0] == name)
    assert "(default:" in every


def test_train_help_lists_config_and_the_bundled_configs():
    text = command_parser("train").format_help()
    assert "--config FILE_OR_NAME" in text
    assert "--learning-rate" in text and "--learning_rate" not in text
    assert "turn off --calibrate" in text and "bert-large-cased, minilm-cpu, own-corpus, quickstart" in text


@pytest.mark.parametrize("name", SHOWS_PROGRESS)
def test_tools_that_predict_take_quiet(name):
    assert "--quiet" in shown_options(command_parser(name))


def test_snake_case_training_flags_still_parse(tmp_path):
    from nerforge.cli.train import parse_config

    a = parse_config(["--tiny_model", "--learning_rate", "3e-5", "--output_dir", str(tmp_path)])
    b = parse_config(["--tiny-model", "--learning-rate", "3e-5", "--output-dir", str(tmp_path)])
    assert a == b and a.training.learning_rate == 3e-5


def test_bundled_configs_are_named_from_any_folder(tmp_path, monkeypatch):
    from nerforge.cli.train import parse_config
    from nerforge.config import ConfigError, config_path

    monkeypatch.chdir(tmp_path)
    cfg = parse_config(["--config", "quickstart"])
    assert cfg.model.tiny_model and cfg.data.data_dir == "bundled:sample"
    assert cfg.data.loader_kwargs()["data_dir"] == str(ROOT / "nerforge" / "sample_data")
    assert config_path("bert-large-cased.yaml").name == "bert-large-cased.yaml"
    with pytest.raises(ConfigError, match=r"no bundled config of that name \(bundled: bert-base-cased"):
        config_path("bert-huge")
    with pytest.raises(ConfigError, match="unknown bundled data"):
        parse_config(["--data_dir", "bundled:nothing"]).data.loader_kwargs()


def test_progress_only_on_a_terminal_and_not_with_quiet(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    off = Progress("x")
    off.update(1, 2)
    assert not off.enabled and off.bar is None and sys.stderr.getvalue() == ""
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    quiet = Progress("x", quiet=True)
    quiet.update(1, 2)
    assert quiet.bar is None and tty.getvalue() == ""
    on = Progress("predicting")
    on.update(3, 10)
    assert on.bar.n == 3 and on.bar.total == 10
    on.update(1, 4)  # a second pass (another split) starts a new bar
    assert on.bar.n == 1 and on.bar.total == 4
    on.close()
    assert "predicting" in tty.getvalue()


def test_unknown_command_and_no_command_exit_2(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["verify", "quantize", "onnx"])
def test_commands_that_write_into_the_export_say_how_to_get_a_hub_model_locally(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    data = [] if name == "onnx" else ["--data-dir", "bundled:sample"]
    if name == "quantize":
        pytest.importorskip("torchao", reason="quantize checks for the int8 extra first")
    if name == "onnx":
        pytest.importorskip("onnxruntime", reason="onnx checks for the onnx extra first")
    assert main([name, "--model", "someone/ner-model", *data]) == 2
    err = capsys.readouterr().err
    assert "someone/ner-model: not a local model folder" in err
    assert "hf download someone/ner-model --local-dir DIR, then --model DIR" in err
    (tmp_path / "empty").mkdir()  # a folder without a model: no Hub hint
    assert main([name, "--model", "empty", *data]) == 2
    err = capsys.readouterr().err
    assert "empty: not a local model folder (no config.json)" in err and "hf download" not in err


def test_exit_statuses_are_one_table():
    assert set(EXIT_STATUS) == {0, 1, 2, 3}


def test_bad_input_is_exit_2_and_an_unwritable_output_exit_1_in_one_line(tiny_model, tmp_path, capsys):
    """score: a missing data folder is 2; --metrics-json into a file where a folder should be is 1;
    neither prints a traceback, and the bad-input case writes nothing."""
    from conftest import SAMPLE_DIR

    args = ["--model", str(tiny_model), "--split", "test", "--quiet"]
    assert main(["score", *args, "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nowhere" in err[-1]
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["score", *args, "--data-dir", str(SAMPLE_DIR), "--metrics-json", str(blocker / "m.json")])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: could not write {blocker / 'm.json'}")


def test_predict_reads_the_columns_of_the_export(tiny_model, tmp_path, capsys):
    """A model trained on a 2-column corpus predicts a 2-column file without --columns."""
    import shutil

    from nerforge.config import DataConfig, ModelConfig, RunConfig, TrainingConfig

    export = tmp_path / "export"
    shutil.copytree(tiny_model, export)
    RunConfig(ModelConfig(), DataConfig(columns=["tokens", "ner_tags"]), TrainingConfig()).save(
        export / "training_config.yaml"
    )
    conll = tmp_path / "two.conll"
    conll.write_text("EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n")
    assert main(["predict", "--model", str(export), "--conll", str(conll), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert [len(line.split()) for line in out.splitlines() if line] == [3, 3, 3, 3]
    assert "entity micro" in err and "tagged 4 words in 2 sentences" in err


def test_python_dash_m_forms_and_the_sample_help(tmp_path):
    """`python -m nerforge` is the command; `python -m nerforge.sample --help` shows help and writes nothing."""
    env_cwd = dict(cwd=tmp_path, capture_output=True, text=True, timeout=120)
    p = subprocess.run([sys.executable, "-m", "nerforge", "--help"], **env_cwd)
    assert p.returncode == 0 and "usage: nerforge" in p.stdout and "calibrate" in p.stdout
    p = subprocess.run([sys.executable, "-m", "nerforge.sample", "--help"], **env_cwd)
    assert p.returncode == 0 and "usage: python -m nerforge.sample" in p.stdout
    assert list(tmp_path.iterdir()) == []
    p = subprocess.run([sys.executable, "-m", "nerforge.sample", str(tmp_path / "s")], **env_cwd)
    assert p.returncode == 0 and sorted(f.name for f in (tmp_path / "s").iterdir()) == [
        "test.txt",
        "train.txt",
        "valid.txt",
    ]
    assert (tmp_path / "s" / "train.txt").read_text() == (ROOT / "nerforge" / "sample_data" / "train.txt").read_text()


def test_data_build_pushes_only_with_a_dataset_id(tmp_path, capsys):
    from conftest import SAMPLE_DIR

    code = main(["data", "build", "--data-dir", str(SAMPLE_DIR), "--output", str(tmp_path / "o"), "--push-to-hub"])
    assert code == 2 and "--push-to-hub needs --hub-dataset-id" in capsys.readouterr().err
    assert main(["data", "build", "--data-dir", str(SAMPLE_DIR), "--output", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads(json.dumps(sorted(p.name for p in (tmp_path / "o" / "data").iterdir()))) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]


def test_iob2_to_iob1_is_the_inverse_of_iob1_to_iob2():
    from conll2003_loader import iob1_to_iob2, iob2_to_iob1

    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "B-PER", "O", "B-MISC"]
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "I-PER", "O", "I-MISC"]
    assert iob2_to_iob1(iob2) == iob1 and iob1_to_iob2(iob1) == iob2
    assert iob2_to_iob1(iob1) == iob1  # IOB1 in, unchanged
    assert iob2_to_iob1([]) == [] and iob2_to_iob1(["O", "O"]) == ["O", "O"]


def test_predict_writes_the_input_files_tagging_scheme(tiny_model, tmp_path, capsys):
    """The sample test file is IOB1 (as CoNLL-2003's): predictions come out in IOB1, so conlleval's token
    accuracy compares like with like; --output-scheme iob2 writes IOB2 and says that the schemes differ."""
    from conftest import SAMPLE_DIR, read_tagged_conll

    from conll2003_loader import iob1_to_iob2, iob2_to_iob1

    columns = {}
    for scheme in ("auto", "iob2"):
        out = tmp_path / f"{scheme}.conll"
        args = ["--model", str(tiny_model), "--conll", str(SAMPLE_DIR / "test.txt"), "--output", str(out)]
        assert main(["predict", *args, "--output-scheme", scheme, "--quiet"]) == 0
        err = capsys.readouterr().err
        assert ("note: the gold tags are IOB1 and the predictions IOB2" in err) == (scheme == "iob2")
        columns[scheme] = read_tagged_conll(out)[2]
    gold = read_tagged_conll(tmp_path / "auto.conll")[1]
    assert any(g != iob1_to_iob2(g) for g in gold)  # the file is IOB1
    assert columns["auto"] == [iob2_to_iob1(p) for p in columns["iob2"]]
    assert columns["iob2"] == [iob1_to_iob2(p) for p in columns["auto"]]
