"""`python -m conll2003_loader build` + load_dataset, the pre-build message, errors, Hub push (offline)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from loader_fixtures import write_corpus

import conll2003_loader
from conll2003_loader import Conll2003
from conll2003_loader import __main__ as cli

PACKAGE = Path(conll2003_loader.__file__).resolve().parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf_cache"), "HF_HUB_OFFLINE": "1"}


def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "conll2003_loader", *args], env=env, capture_output=True, text=True)


def test_build_then_load_dataset(tmp_path, env):
    raw, out = write_corpus(tmp_path / "raw", "eng"), tmp_path / "out"
    proc = _run(env, "build", "--data-dir", str(raw), "--output", str(out), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "configs:" in card and "dataset_info:" in card
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "load_cache"))
    builder = Conll2003(cache_dir=str(tmp_path / "c2"), data_dir=str(raw))
    assert {k: len(v) for k, v in ds.items()} == {"train": 3, "validation": 1, "test": 2}
    for split in ds.values():
        assert split.features == builder.info.features
    assert ds["train"].features["ner_tags"].feature.int2str(ds["train"][0]["ner_tags"])[0] == "B-PER"


def test_build_two_columns_iob1(tmp_path, env):
    raw = write_corpus(tmp_path / "raw", texts=("a\tI-ORG\nb\tO\n\nc\tI-PER\n", "c\tI-PER\n", "d\tO\n"))
    out = tmp_path / "out"
    proc = _run(
        env,
        "build",
        "--data-dir",
        str(raw),
        "--output",
        str(out),
        "--columns",
        "tokens",
        "ner_tags",
        "--separator",
        "tab",
        "--tagging-scheme",
        "iob1",
    )
    assert proc.returncode == 0, proc.stderr
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "load_cache"))
    feat = ds["train"].features["ner_tags"].feature
    assert feat.names == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"] and "pos_tags" not in ds["train"].features
    assert feat.int2str(ds["train"][0]["ner_tags"]) == ["I-ORG", "O"]


def test_before_build_message(tmp_path, env):
    folder = tmp_path / "conll2003_loader"
    shutil.copytree(PACKAGE, folder, ignore=shutil.ignore_patterns("data", "README.md", "__pycache__"))
    with pytest.raises(Exception, match=r"run `python -m conll2003_loader build --data-dir RAW_DIR`"):
        datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "load_cache"))
    # after a build into that folder, the placeholder is ignored
    assert (
        _run(env, "build", "--data-dir", str(write_corpus(tmp_path / "raw")), "--output", str(folder)).returncode == 0
    )
    assert len(datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "lc2"))["train"]) == 3


def test_committed_placeholder_is_current(tmp_path):
    cli.write_placeholder(tmp_path / "p.parquet")
    import pyarrow.parquet as pq

    assert pq.read_schema(tmp_path / "p.parquet").metadata == pq.read_schema(PACKAGE / cli.PLACEHOLDER).metadata


def test_bad_input_exits_2_without_traceback(tmp_path, env):
    raw = write_corpus(tmp_path / "raw", texts=("a DT I-NP O\nEU NNP I-NP\n", "b DT I-NP O\n", "c DT I-NP O\n"))
    proc = _run(env, "build", "--data-dir", str(raw), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"error: {raw / 'train.txt'}:2: expected 4 columns (tokens pos_tags chunk_tags ner_tags), found 3: 'EU NNP I-NP'"
    )
    missing = _run(env, "build", "--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out"))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("error: ")


def test_push_to_hub_at_the_hub_boundary(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setenv("HF_TOKEN", "hf_secret_never_printed")
    monkeypatch.setattr(cli.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(cli.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    out = tmp_path / "out"
    code = cli.main(
        [
            "build",
            "--data-dir",
            str(write_corpus(tmp_path / "raw")),
            "--output",
            str(out),
            "--push-to-hub",
            "--hub-dataset-id",
            "me/conll-test",
            "--hub-private",
        ]
    )
    assert code == 0
    (_, repo, create_kw), (_, upload_kw) = calls
    assert repo == "me/conll-test" and create_kw == {"repo_type": "dataset", "exist_ok": True, "private": True}
    assert upload_kw["repo_id"] == "me/conll-test" and upload_kw["repo_type"] == "dataset"
    assert upload_kw["folder_path"] == str(out) and "README.md" in upload_kw["allow_patterns"]
    captured = capsys.readouterr()
    assert "hf_secret" not in captured.out + captured.err
    assert "hf_secret" not in "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())


def test_build_with_named_split_files_keeps_local_paths_out_of_the_card(tmp_path, env):
    raw = write_corpus(tmp_path / "raw", texts=("a\tB-ORG\nb\tO\n\nc\tB-PER\n", "c\tB-PER\n", "d\tO\n"))
    (raw / "train.txt").rename(raw / "wnut17train.conll")
    (raw / "valid.txt").rename(raw / "emerging.dev.conll")
    out = tmp_path / "out"
    args = ["build", "--data-dir", str(raw), "--output", str(out), "--columns", "tokens", "ner_tags"]
    args += ["--train-file", "wnut17train.conll", "--validation-file", "emerging.dev.conll"]
    proc = _run(env, *args)
    assert proc.returncode == 0, proc.stderr
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "load_cache"))
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "validation": 1}  # exactly the files given
    card = (out / "README.md").read_text()
    assert "wnut17train.conll" in card and str(raw) not in card
