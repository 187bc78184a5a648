from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from nerforge.cli.train import parse_config
from nerforge.config import ConfigError, load_saved


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_yaml_then_command_line_overrides(tmp_path):
    path = write(
        tmp_path,
        "model: {model_name_or_path: m}\ntraining: {learning_rate: 1e-4, seed: 3}\n"
        "data: {columns: [tokens, ner_tags]}\n",
    )
    cfg = parse_config(["--config", path, "--seed", "7", "--label_names", "O", "B-X", "I-X"])
    assert cfg.model.model_name_or_path == "m"
    assert cfg.training.learning_rate == 1e-4  # YAML reads "1e-4" as a string: converted, not rejected
    assert cfg.training.seed == 7
    assert cfg.data.columns == ["tokens", "ner_tags"] and cfg.data.label_names == ["O", "B-X", "I-X"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("training: {learnin_rate: 0.1}\n", "unknown key 'training.learnin_rate'"),
        ("optim: {lr: 0.1}\n", "unknown section 'optim'"),
        ("training: {seed: 1.5}\n", "training.seed: expected an integer"),
        ("training: {learning_rate: fast}\n", "training.learning_rate: expected a number"),
        ("data: {label_all_tokens: 'yes'}\n", "data.label_all_tokens: expected true or false"),
        ("data: {tagging_scheme: bio}\n", "expected one of"),
        ("training: {push_to_hub: true}\n", "needs training.hub_model_id"),
        ("data: {max_length: 128, context_size: 32, pack_length: 80}\n", "pack_length 80 \\+ 2 x data.context_size 32"),
        ("data: {context_size: 8, sentence_alone_fraction: 1.5}\n", "sentence_alone_fraction: expected a value in"),
        ("data: {sentence_alone_fraction: 0.5}\n", "needs data.context_size or data.pack_length"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_configs_are_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(["--config", write(tmp_path, text)])


def test_unknown_and_mistyped_command_line_arguments(tmp_path):
    with pytest.raises(ConfigError, match="--bogus"):
        parse_config(["--bogus", "1"])
    with pytest.raises(SystemExit):  # argparse: invalid int value
        parse_config(["--seed", "abc"])


def test_resolved_config_round_trips(tmp_path):
    cfg = parse_config(["--learning_rate", "3e-5", "--context_size", "64"])
    cfg.save(tmp_path / "training_config.yaml")
    assert set(yaml.safe_load((tmp_path / "training_config.yaml").read_text())) == {"model", "data", "training"}
    again = load_saved(tmp_path / "training_config.yaml")
    assert again == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_run_config_loads(path):
    parse_config(["--config", str(path)])
    first = path.read_text().splitlines()[0]
    assert first.startswith(("# nerforge train ", "# accelerate launch ")) and f"--config {path.stem}" in first


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.num_processes >= 1
    assert Path(path).read_text().splitlines()[0].startswith("#")


def test_per_split_files_and_a_prepared_dataset_do_not_mix():
    cfg = parse_config(["--data_dir", "wnut", "--train_file", "wnut17train.conll", "--test_file", "t.conll"])
    kw = cfg.data.loader_kwargs()
    assert kw["train_file"] == "wnut17train.conll" and kw["validation_file"] is None and kw["data_dir"] == "wnut"
    with pytest.raises(ConfigError, match="dataset_path"):
        parse_config(["--dataset_path", "built", "--train_file", "x.conll"])


def test_card_license_is_a_typed_model_setting():
    assert parse_config([]).model.license == "apache-2.0"
    assert parse_config(["--license", "mit"]).to_dict()["model"]["license"] == "mit"
