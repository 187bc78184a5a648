"""conll2003_loader.load: one way from data settings to splits (per-split file names, a prepared
dataset folder), shared by training, scoring and the build command."""

from pathlib import Path

import pytest
from loader_fixtures import write_corpus

from conll2003_loader import ConllFormatError, builder_options, load_splits

WNUT = {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"}
TWO_COLUMNS = ("a\tB-person\nb\tO\n\nc\tB-location\n", "c\tB-location\n", "d\tO\ne\tB-person\n")


def write_wnut(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in zip(WNUT.values(), TWO_COLUMNS):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_per_split_file_names_are_read_without_renaming(tmp_path):
    d = write_wnut(tmp_path / "wnut")
    ds = load_splits(
        data_dir=str(d),
        cache_dir=str(tmp_path / "cache"),
        columns=["tokens", "ner_tags"],
        train_file=WNUT["train"],
        validation_file=WNUT["validation"],
        test_file=WNUT["test"],
    )
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "validation": 1, "test": 1}
    assert ds["test"]["tokens"] == [["d", "e"]]
    assert ds["train"].features["ner_tags"].feature.names == ["O", "B-location", "I-location", "B-person", "I-person"]


def test_given_files_are_exactly_the_splits_and_paths_work_without_a_folder(tmp_path, monkeypatch):
    d = write_wnut(tmp_path / "wnut")
    monkeypatch.chdir(tmp_path)  # relative paths are taken from the working folder
    ds = load_splits(
        cache_dir=str(tmp_path / "cache"),
        columns=["tokens", "ner_tags"],
        train_file=f"wnut/{WNUT['train']}",
        test_file=str(d / WNUT["test"]),
    )
    assert sorted(ds) == ["test", "train"]


def test_builder_options_resolve_files_against_the_folder(tmp_path):
    opts = builder_options(
        str(tmp_path), columns=["tokens", "ner_tags"], validation_file="dev.conll", encoding="latin-1"
    )
    assert opts["data_dir"] == str(tmp_path.resolve())
    assert opts["split_files"] == {"validation": str((tmp_path / "dev.conll").resolve())}
    assert opts["columns"] == ("tokens", "ner_tags") and opts["encoding"] == "latin-1"
    assert "split_files" not in builder_options(str(tmp_path))


def test_a_missing_named_file_is_an_error_naming_it(tmp_path):
    d = write_wnut(tmp_path / "wnut")
    with pytest.raises(ConllFormatError, match="missing.conll"):
        load_splits(
            data_dir=str(d),
            cache_dir=str(tmp_path / "c"),
            columns=["tokens", "ner_tags"],
            train_file=WNUT["train"],
            validation_file="missing.conll",
        )


def test_default_names_and_a_save_to_disk_folder(tmp_path):
    ds = load_splits(data_dir=str(write_corpus(tmp_path / "raw")), cache_dir=str(tmp_path / "cache"))
    assert len(ds["train"]) == 3 and ds["train"]["tokens"][0] == ["Alice", "Smith", "visited", "Paris", "."]
    ds.save_to_disk(str(tmp_path / "saved"))
    again = load_splits(dataset_path=str(tmp_path / "saved"))
    assert {k: v["tokens"] for k, v in again.items()} == {k: v["tokens"] for k, v in ds.items()}
