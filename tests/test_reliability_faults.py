"""Faults on output, end to end: a full disk while exporting, Hub push failures (HTTP 500, 401, timeouts)
simulated at the huggingface_hub boundary, and the token kept out of every file and log line.

Child processes get a sitecustomize.py (on PYTHONPATH) that patches HfApi.create_repo/upload_folder,
the push's sleep, or nerforge.export.plot_training_curve (ENOSPC), as NERFORGE_FAULT says."""

from __future__ import annotations

import errno
import hashlib
import json
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT
from reliability_report import record
from test_train import FAST, run

MARKER = "nerforge-secret-marker-7f3a9c"  # the HF_TOKEN of every run here; must never be written anywhere
PUSH = ["--push_to_hub", "--hub_model_id", "x/y"]
FIGURES: dict = {}

SITECUSTOMIZE = textwrap.dedent("""
    import errno, json, os, types

    fault = os.environ.get("NERFORGE_FAULT", "")
    _log = os.environ["NERFORGE_FAULT_LOG"]

    def note(**kw):
        with open(_log, "a") as f:
            f.write(json.dumps(kw) + "\\n")

    class FakeHubHTTPError(Exception):
        def __init__(self, status):
            self.response = types.SimpleNamespace(status_code=status)
            # a careless server message echoing the credentials: the caller must scrub it
            super().__init__(f"{status} Server Error for url https://huggingface.co/api/models/x/y "
                             f"(Authorization: Bearer {os.environ.get('HF_TOKEN')})")

    if fault.startswith("push_"):
        import huggingface_hub
        import nerforge.hub as push

        attempts = {"n": 0}

        def create_repo(self, repo_id, **kw):
            note(call="create_repo", repo_id=repo_id)

        def upload_folder(self, **kw):
            attempts["n"] += 1
            folder = kw["folder_path"]
            note(call="upload_folder", attempt=attempts["n"], files=sorted(os.listdir(folder)))
            if fault == "push_500":
                raise FakeHubHTTPError(500)
            if fault == "push_401":
                raise FakeHubHTTPError(401)
            if fault == "push_timeout" and attempts["n"] <= 2:
                raise TimeoutError("The read operation timed out")
            return types.SimpleNamespace(commit_url="https://huggingface.co/x/y/commit/0123abc")

        huggingface_hub.HfApi.create_repo = create_repo
        huggingface_hub.HfApi.upload_folder = upload_folder
        push.time = types.SimpleNamespace(sleep=lambda s: note(call="sleep", seconds=s))

    if fault == "enospc_export":
        import nerforge.export as export

        def full_disk(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        export.plot_training_curve = full_disk
""")


def folder_digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Session:
    """One output folder, runs with faults injected, every log kept for the secret scan."""

    def __init__(self, tmp: Path, corpus: Path):
        self.tmp, self.corpus, self.out = tmp, corpus, tmp / "out"
        self.site = tmp / "site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.hf_home = tmp / "hf_home"
        self.logs: list[str] = []

    def run(self, fault: str, *extra):
        log = self.tmp / f"{fault}.jsonl"
        env = {
            "PYTHONPATH": f"{self.site}:{ROOT}",
            "NERFORGE_FAULT": fault,
            "NERFORGE_FAULT_LOG": str(log),
            "HF_TOKEN": MARKER,
            "HF_HOME": str(self.hf_home),
            "HF_DATASETS_CACHE": str(self.hf_home / "datasets"),
        }
        p = run(
            "--data_dir",
            str(self.corpus),
            "--output_dir",
            str(self.out),
            *FAST,
            "--max_steps",
            "4",
            "--eval_steps",
            "4",
            "--save_steps",
            "4",
            *extra,
            env=env,
            check=False,
        )
        self.logs += [p.stdout, p.stderr]
        calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        return p, calls


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from nerforge.sample_corpus import write_corpus

    tmp = tmp_path_factory.mktemp("faults")
    write_corpus(tmp / "corpus", seed=2, sizes=(("train", 32), ("valid", 16), ("test", 16)))
    return Session(tmp, tmp / "corpus")


@pytest.fixture(scope="module")
def push_500(session):
    return session.run("push_500", *PUSH)


def test_push_500_is_retried_then_exits_1_with_export_intact(session, push_500):
    from nerforge.hub import check_export_dir

    p, calls = push_500
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "push to x/y failed after 4 attempts while trying to upload the folder" in err[0]
    assert "Local export" in err[0] and "unchanged" in err[0] and "nerforge push --model" in err[0]
    uploads = [c for c in calls if c["call"] == "upload_folder"]
    assert len(uploads) == 4 and [c["seconds"] for c in calls if c["call"] == "sleep"] == [2.0, 4.0, 8.0]
    export = session.out / "model"
    check_export_dir(export)
    assert sorted(p.name for p in export.iterdir()) == uploads[0]["files"] == uploads[-1]["files"]
    assert (session.out / "metrics.json").is_file()
    FIGURES["push HTTP 500 (training run --push_to_hub)"] = (
        f"retried {len(uploads) - 1} times, exit 1, one-line error; export complete ({len(uploads[0]['files'])} files)"
    )


def test_push_401_not_retried_and_timeouts_retried(session, push_500):
    before = folder_digest(session.out / "model")
    p, calls = session.run("push_401", *PUSH, "--resume_from_checkpoint", "latest")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "authentication failed for x/y" in p.stderr and "HF_TOKEN" in p.stderr
    assert [c["call"] for c in calls].count("upload_folder") == 1 and not [c for c in calls if c["call"] == "sleep"]
    from nerforge.hub import check_export_dir

    check_export_dir(session.out / "model")
    after_401 = folder_digest(session.out / "model")
    assert set(after_401) == set(before)  # re-exported (same run, no training): the same files
    FIGURES["push HTTP 401"] = "not retried, exit 1, message names HF_TOKEN; export complete"

    p, calls = session.run("push_timeout", *PUSH, "--resume_from_checkpoint", "latest")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "pushed to https://huggingface.co/x/y/commit/0123abc" in p.stdout
    assert [c["call"] for c in calls].count("upload_folder") == 3
    assert p.stderr.count("retry 1/3") == 1 and p.stderr.count("retry 2/3") == 1
    FIGURES["push timeouts"] = "2 timeouts retried, then pushed, exit 0"


def test_full_disk_during_export_keeps_previous_export(session, push_500):
    before = folder_digest(session.out / "model")
    p, _ = session.run("enospc_export", "--resume_from_checkpoint", "latest")
    FIGURES["_enospc"] = p
    assert p.returncode != 0
    assert f"could not write the export to {session.out / 'model'}" in p.stderr
    assert "No space left on device" in p.stderr and "previous export there is unchanged" in p.stderr
    assert folder_digest(session.out / "model") == before
    FIGURES["full disk (ENOSPC) while exporting, end to end"] = (
        f"exit {p.returncode}, one-line error naming the folder and ENOSPC, no traceback; previous export "
        f"byte-identical ({len(before)} files)"
    )


def test_full_disk_error_is_one_line_without_traceback(session):
    p = FIGURES.get("_enospc")
    if p is None:
        pytest.skip("the ENOSPC run did not happen")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and str(session.out / "model") in errors[0]


@pytest.fixture
def tiny_export(tmp_path):
    from conftest import NER
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerforge.cli.train import parse_config
    from nerforge.export import export_run
    from nerforge.modeling import build_tiny_bert

    init = build_tiny_bert(["Mara", "said"], NER, tmp_path / "init")
    model = AutoModelForTokenClassification.from_pretrained(init)
    tok = AutoTokenizer.from_pretrained(init)
    cfg = parse_config(["--tiny_model", "--output_dir", str(tmp_path / "o")])
    metrics = {"history": [{"step": 1, "loss": 1.0}]}
    export = export_run(model, tok, cfg, metrics, NER, tmp_path / "o" / "model")
    return export, (model, tok, cfg, metrics, NER)


@pytest.mark.parametrize("where", ["nerforge.card.atomic_write_text", "nerforge.export.write_json_atomic"])
def test_export_run_full_disk_in_process(tiny_export, monkeypatch, where):
    from nerforge.export import ExportError, export_run

    export, args = tiny_export
    before = folder_digest(export)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(where, full)
    with pytest.raises(
        ExportError,
        match=r"could not write the export to .*model: .*No space left on device; "
        r"any previous export there is unchanged",
    ):
        export_run(*args, export)
    assert folder_digest(export) == before
    FIGURES.setdefault("_inproc", set()).add(where)


def test_failed_export_removes_its_temporary_folder(tiny_export, monkeypatch):
    from nerforge.export import ExportError, export_run

    export, args = tiny_export
    monkeypatch.setattr(
        "nerforge.export.write_json_atomic",
        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")),
    )
    with pytest.raises(ExportError):
        export_run(*args, export)
    assert sorted(p.name for p in export.parent.iterdir()) == ["model"]
    FIGURES["_tmp_cleaned"] = True


def test_token_never_written_or_logged(session, push_500):
    """After every run of this module (training, export, card, failed and retried pushes)."""
    assert session.logs and MARKER not in "".join(session.logs)
    assert any("Bearer ***" in log or "***" in log for log in session.logs)  # the echoed token was scrubbed
    files = [p for root in (session.out, session.hf_home) if root.exists() for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10 and (session.out / "model" / "README.md") in files
    leaks = [p for p in files if MARKER.encode() in p.read_bytes()]
    assert leaks == []
    log_lines = sum(len(log.splitlines()) for log in session.logs)
    record("secrets", hits=len(leaks), files=len(files), log_lines=log_lines)


def test_zz_record_fault_figures():
    keys = [k for k in FIGURES if not k.startswith("_")]
    if len(keys) < 4 or len(FIGURES.get("_inproc", ())) < 2 or not FIGURES.get("_tmp_cleaned"):
        pytest.skip("the fault tests did not all pass in this session")
    FIGURES["full disk (ENOSPC) inside export_run, in process"] = (
        "ExportError naming the folder and ENOSPC; previous export byte-identical (2 write sites); "
        "temporary folder removed"
    )
    record("faults", **{k: v for k, v in FIGURES.items() if not k.startswith("_")})
