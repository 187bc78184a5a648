"""Bad inputs through both command-line tools: every input of tests/data/bad/EXPECTED.yaml either parses
with every token accounted for (tokens in == tokens out) or fails with exit status 2 and one
`error: FILE:LINE: ...` line naming the file (and the line, when the error is about one).

The tools' main() functions are called in this process (the same code `python -m ...` runs: argv in,
exit status out; an uncaught exception fails the test); a few inputs also go through a fresh
`python -m` process to check the real exit status and that no traceback is printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import NER, ROOT
from loader_fixtures import TEST, TRAIN
from reliability_report import record

BAD = ROOT / "tests" / "data" / "bad"
EXPECTED = yaml.safe_load((BAD / "EXPECTED.yaml").read_text(encoding="utf-8"))
TOOLS = ("build", "predict")
_FIELD_SEP = re.compile(r"[ \t]+")
RESULTS: dict = {}  # (key, tool) -> ("parse", tokens in, tokens out) | ("error", line)


def expectation(key: str, tool: str):
    value = EXPECTED[key]
    text = value[tool] if isinstance(value, dict) else value
    if m := re.fullmatch(r"parse: (\d+) tokens", text):
        return "parse", int(m.group(1))
    m = re.fullmatch(r"error: (?:line (\d+)|no line), (.+)", text, flags=re.S)
    assert m, f"EXPECTED.yaml: cannot read {key!r}: {text!r}"
    return "error", (int(m.group(1)) if m.group(1) else None), m.group(2)


def count_tokens(data: bytes, encoding: str = "utf-8") -> int:
    """Token lines, counted independently of the loader: not blank, not -DOCSTART-."""
    text = data.decode(encoding).removeprefix("\ufeff")
    n = 0
    for line in text.split("\n"):
        line = line.removesuffix("\r").strip(" \t")
        if line and _FIELD_SEP.split(line, 1)[0] != "-DOCSTART-":
            n += 1
    return n


def materialise(key: str, tmp: Path) -> tuple[Path, list[str]]:
    """The input file for `key` (written to tmp for generated ones) and its extra arguments."""
    name, *args = key.split(" ")
    if not name.startswith("generated/"):
        return BAD / name, args
    name = name.removeprefix("generated/")
    path = tmp / name
    if name == "sentence_10000_tokens.txt":
        rows = ["-DOCSTART- -X- -X- O", "", "Mara NNP I-NP I-PER", ""]
        rows += [f"w{i} NN I-NP {'I-ORG' if i % 7 == 0 else 'O'}" for i in range(10_000)]
        rows += ["", ". . O O", ""]
        path.write_text("\n".join(rows), encoding="utf-8")
    elif name == "token_1mb.txt":
        path.write_text("Mara NNP I-NP I-PER\n" + "x" * 1_000_000 + " NN I-NP O\n. . O O\n", encoding="utf-8")
    elif name == "directory_instead_of_file.txt":
        path.mkdir()
    elif name != "missing_split_file.txt":
        raise AssertionError(f"no generator for {key}")
    return path, args


CASES = [(key, tool) for key in EXPECTED for tool in TOOLS]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from nerforge.modeling import build_tiny_bert

    words = ["Mara", "Lindqvist", "Oren", "said", "visited", "Valdora", "Bank", ".", "w", "x"]
    return build_tiny_bert(words, NER, tmp_path_factory.mktemp("tiny") / "model", seed=0)


def _one_error_line(err: str) -> str:
    """The one `error:` line, last on stderr (progress bars before it are allowed); no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and "Traceback" not in err, err[-3000:]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    return errors[0]


def check_error(err: str, path: Path, line, fragment: str):
    msg = _one_error_line(err)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert msg.startswith("error: " + where), (msg, where)
    assert fragment in msg, (msg, fragment)


def run_build(path: Path, args, tmp: Path, capsys):
    """The input as valid.txt between good train/test files; returns (exit, stderr, file as the tool names it)."""
    from conll2003_loader import __main__ as cli

    raw = tmp / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text(TRAIN, encoding="utf-8")
    (raw / "test.txt").write_text(TEST, encoding="utf-8")
    target = raw / "valid.txt"
    if path.is_dir():
        target.mkdir()
    elif path.exists():
        shutil.copyfile(path, target)
    capsys.readouterr()
    code = cli.main(["build", "--data-dir", str(raw), "--output", str(tmp / "out"), *args])
    _, err = capsys.readouterr()
    return code, err, target


def parquet_tokens(out: Path, split: str) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(out / "data" / f"{split}-00000-of-00001.parquet", columns=["tokens"]).column(0).to_pylist()


@pytest.mark.parametrize("key, tool", CASES, ids=[f"{t}:{k}" for k, t in CASES])
def test_bad_input(key, tool, tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    path, args = materialise(key, tmp_path)
    encoding = args[args.index("--encoding") + 1] if "--encoding" in args else "utf-8"
    exp = expectation(key, tool)
    if tool == "build":
        code, err, named = run_build(path, args, tmp_path, capsys)
        if exp[0] == "error":
            if not path.exists():  # a missing split is reported under its first accepted name
                named = named.parent / "eng.testa"
            assert code == 2, err
            check_error(err, named, exp[1], exp[2])
            RESULTS[key, tool] = ("error", exp[1])
            return
        assert code == 0, err
        tokens_in = count_tokens(path.read_bytes(), encoding)
        out = tmp_path / "out"
        valid = parquet_tokens(out, "validation")
        tokens_out = sum(map(len, valid))
        # the good neighbours come through whole too
        assert sum(map(len, parquet_tokens(out, "train"))) == count_tokens(TRAIN.encode())
        assert sum(map(len, parquet_tokens(out, "test"))) == count_tokens(TEST.encode())
        text = path.read_bytes().decode(encoding)
        assert all(tok in text for sent in valid for tok in sent)  # tokens kept as written
    else:
        from nerforge.cli.predict import main

        out = tmp_path / "tagged.txt"
        capsys.readouterr()
        code = main(["--model", str(tiny_model), "--conll", str(path), "--output", str(out), *args])
        stdout, err = capsys.readouterr()
        if exp[0] == "error":
            assert code == 2 and stdout == "" and not out.exists(), err
            check_error(err, path, exp[1], exp[2])
            RESULTS[key, tool] = ("error", exp[1])
            return
        assert code == 0, err
        src = path.read_bytes().decode(encoding)
        res = out.read_bytes().decode(encoding)
        assert src.startswith("\ufeff") == res.startswith("\ufeff")
        src_lines, res_lines = src.removeprefix("\ufeff").split("\n"), res.removeprefix("\ufeff").split("\n")
        assert len(res_lines) == len(src_lines)  # nothing dropped, nothing added
        tokens_in, tokens_out = count_tokens(path.read_bytes(), encoding), 0
        for a, b in zip(src_lines, res_lines):
            fields = _FIELD_SEP.split(a.removesuffix("\r").strip(" \t"))
            if fields == [""]:
                assert b == a  # blank lines byte for byte
                continue
            if fields[0] == "-DOCSTART-":  # one column more, O: as many columns as token lines
                assert _FIELD_SEP.split(b.removesuffix("\r").strip(" \t")) == [*fields, "O"], (a, b)
                assert b.endswith("\r") == a.endswith("\r")
                continue
            out_fields = _FIELD_SEP.split(b.removesuffix("\r").strip(" \t"))
            assert out_fields[:-1] == fields and out_fields[-1] in NER, (a, b)  # one extra column: the tag
            assert b.endswith("\r") == a.endswith("\r")
            tokens_out += 1
    assert tokens_in == exp[1], f"EXPECTED.yaml says {exp[1]} tokens, the file has {tokens_in}"
    assert tokens_out == tokens_in, f"{tokens_in} tokens in, {tokens_out} out"
    RESULTS[key, tool] = ("parse", tokens_in, tokens_out)


def _module(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


SUBPROCESS_CHECKS = []


@pytest.mark.parametrize(
    "tool, key",
    [
        ("build", "binary_garbage.txt"),
        ("predict", "nul_bytes.txt"),
        ("predict", "generated/directory_instead_of_file.txt"),
    ],
)
def test_real_process_exit_2_without_traceback(tool, key, tiny_model, tmp_path):
    path, args = materialise(key, tmp_path)
    exp = expectation(key, tool)
    if tool == "build":
        raw = tmp_path / "raw"
        raw.mkdir()
        (raw / "train.txt").write_text(TRAIN)
        (raw / "test.txt").write_text(TEST)
        shutil.copyfile(path, raw / "valid.txt")
        path = raw / "valid.txt"
        p = _module(
            "conll2003_loader",
            "build",
            "--data-dir",
            raw,
            "--output",
            tmp_path / "out",
            "--cache-dir",
            tmp_path / "cache",
        )
    else:
        p = _module("nerforge.predict", "--model", tiny_model, "--conll", path)
        assert p.stdout == ""
    assert p.returncode == 2, p.stderr[-3000:]
    check_error(p.stderr, path, exp[1], exp[2])
    SUBPROCESS_CHECKS.append(key)


def test_zz_record_figures():
    """Runs last in this module: the corpus is big enough and every case above passed."""
    assert len(EXPECTED) >= 25
    missing = [c for c in CASES if c not in RESULTS]
    if missing:
        pytest.skip(f"{len(missing)} input cases did not pass in this session (e.g. {missing[0]})")
    parsed = [r for r in RESULTS.values() if r[0] == "parse"]
    errors = [r for r in RESULTS.values() if r[0] == "error"]
    generated = sum(k.startswith("generated/") for k in EXPECTED)
    record(
        "inputs",
        inputs=len(EXPECTED),
        committed=len(EXPECTED) - generated,
        generated=generated,
        runs=len(RESULTS),
        errors=len(errors),
        errors_with_line=sum(r[1] is not None for r in errors),
        errors_without_line=sum(r[1] is None for r in errors),
        accepted=len(parsed),
        tokens_in=sum(r[1] for r in parsed),
        tokens_out=sum(r[2] for r in parsed),
        silent_losses=sum(r[1] != r[2] for r in parsed),
        subprocess_checks=len(SUBPROCESS_CHECKS),
    )
