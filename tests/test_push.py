"""Tests for push_export and `python -m nerforge.push`, offline: huggingface_hub.HfApi is
intercepted at its API boundary (create_repo / create_branch / upload_folder)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx2  # the HTTP client huggingface_hub 2.x uses
import huggingface_hub
import pytest
from huggingface_hub.errors import HfHubHTTPError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nerforge.cli.push as push  # noqa: E402
import nerforge.hub as push_module  # noqa: E402
from nerforge.hub import AuthenticationError, IncompleteExportError, PushError, push_export  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = "hf_MARKERtokenDoNotLeak0123456789"
REPO = "someone/tiny-ner"
URL = f"https://huggingface.co/{REPO}/commit/0123abcd"


def http_error(status: int, extra: str = "") -> HfHubHTTPError:
    request = httpx2.Request("POST", f"https://huggingface.co/api/{REPO}/commit/main")
    response = httpx2.Response(status, request=request)
    return HfHubHTTPError(f"{status} Client/Server Error for url {request.url}{extra}", response=response)


def timeout_error() -> Exception:
    return httpx2.ReadTimeout("The read operation timed out")


@pytest.fixture
def export_dir(tmp_path):
    folder = tmp_path / "out" / "model"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(256))
    (folder / "config.json").write_text('{"id2label": {"0": "O", "1": "B-PER"}}')
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    (folder / "metrics.json").write_text('{"test": {"f1": 0.5}}')
    return folder


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class FakeHub:
    """Records calls made on HfApi; `failures[name]` is a list of exceptions raised first."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.tokens: list = []
        self.failures: dict[str, list[Exception]] = {}

    def _maybe_fail(self, name):
        queue = self.failures.get(name) or []
        if queue:
            raise queue.pop(0)

    def install(self, monkeypatch):
        hub = self

        def create_repo(self, repo_id, **kwargs):
            hub.calls.append(("create_repo", (repo_id,), kwargs))
            hub.tokens.append(self.token)
            hub._maybe_fail("create_repo")
            return f"https://huggingface.co/{repo_id}"

        def create_branch(self, repo_id, **kwargs):
            hub.calls.append(("create_branch", (repo_id,), kwargs))
            hub._maybe_fail("create_branch")

        def upload_folder(self, **kwargs):
            hub.calls.append(("upload_folder", (), kwargs))
            hub._maybe_fail("upload_folder")
            return huggingface_hub.CommitInfo(
                commit_url=URL, commit_message=kwargs.get("commit_message"), commit_description="", oid="0123abcd"
            )

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", create_branch)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        return self

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def hub(monkeypatch):
    return FakeHub().install(monkeypatch)


@pytest.fixture
def waits(monkeypatch):
    recorded: list[float] = []
    monkeypatch.setattr(push_module, "time", SimpleNamespace(sleep=recorded.append))
    return recorded


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no cached login from the machine
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


# --- successful pushes -----------------------------------------------------------


def test_push_calls_hub_with_the_right_arguments(export_dir, hub, waits):
    url = push_export(export_dir, REPO, private=True, revision="v1", commit_message="first model")
    assert url == URL
    assert hub.names() == ["create_repo", "create_branch", "upload_folder"]
    _, args, kwargs = hub.calls[0]
    assert args == (REPO,) and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert kwargs["repo_type"] == "model"
    _, args, kwargs = hub.calls[1]
    assert args == (REPO,) and kwargs["branch"] == "v1" and kwargs["exist_ok"] is True
    _, _, kwargs = hub.calls[2]
    assert Path(kwargs["folder_path"]) == export_dir
    assert kwargs["repo_id"] == REPO and kwargs["revision"] == "v1"
    assert kwargs["commit_message"] == "first model"
    # The int8 package is machine code for the CPU that built it: huggingface_hub's own filter leaves it out.
    from huggingface_hub.utils import filter_repo_objects

    files = ["model.safetensors", "onnx/model.onnx", "pt2/model_int8.pt2", "pt2/build.json"]
    assert list(filter_repo_objects(files, ignore_patterns=kwargs["ignore_patterns"])) == files[:2]
    assert waits == []


def test_push_without_revision_uses_defaults(export_dir, hub, waits):
    push_export(export_dir, REPO)
    assert hub.names() == ["create_repo", "upload_folder"]
    assert hub.calls[0][2]["private"] is False
    kwargs = hub.calls[1][2]
    assert kwargs["revision"] is None and kwargs["commit_message"] == push_module.DEFAULT_COMMIT_MESSAGE


def test_token_precedence(export_dir, hub, waits, monkeypatch):
    push_export(export_dir, REPO)
    assert hub.tokens[-1] is None  # let huggingface_hub use the cached login
    monkeypatch.setenv("HF_TOKEN", MARKER)
    push_export(export_dir, REPO)
    assert hub.tokens[-1] == MARKER
    push_export(export_dir, REPO, token="hf_explicitArgumentToken000000")
    assert hub.tokens[-1] == "hf_explicitArgumentToken000000"


# --- retries -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: http_error(500),
        lambda: http_error(503),
        lambda: http_error(429),
        timeout_error,
        lambda: httpx2.ConnectError("connection refused"),
    ],
)
def test_transient_errors_are_retried_then_succeed(export_dir, hub, waits, make_error):
    hub.failures["upload_folder"] = [make_error(), make_error()]
    assert push_export(export_dir, REPO, backoff_s=0.5) == URL
    assert hub.names().count("upload_folder") == 3
    assert waits == [0.5, 1.0]


def test_retries_give_up_with_push_error(export_dir, hub, waits):
    before = snapshot(export_dir)
    hub.failures["upload_folder"] = [http_error(500) for _ in range(10)]
    with pytest.raises(PushError) as info:
        push_export(export_dir, REPO, max_retries=3, backoff_s=1.0)
    assert hub.names().count("upload_folder") == 4
    assert waits == [1.0, 2.0, 4.0]
    msg = str(info.value)
    assert "after 4 attempts" in msg and "500" in msg
    assert "nerforge push --model OUTPUT_DIR/model --hub-model-id user/name" in msg
    assert snapshot(export_dir) == before


def test_timeout_on_create_repo_gives_up(export_dir, hub, waits):
    hub.failures["create_repo"] = [timeout_error() for _ in range(5)]
    with pytest.raises(PushError, match="ReadTimeout"):
        push_export(export_dir, REPO, max_retries=2, backoff_s=0)
    assert hub.names() == ["create_repo"] * 3  # nothing uploaded


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_errors_are_not_retried(export_dir, hub, waits, status):
    before = snapshot(export_dir)
    hub.failures["upload_folder"] = [http_error(status)]
    with pytest.raises(AuthenticationError) as info:
        push_export(export_dir, REPO)
    assert hub.names().count("upload_folder") == 1 and waits == []
    msg = str(info.value)
    assert f"authentication failed for {REPO}: set HF_TOKEN or run `hf auth login`" in msg
    assert "nerforge push --model" in msg
    assert snapshot(export_dir) == before


def test_other_client_errors_are_not_retried(export_dir, hub, waits):
    hub.failures["upload_folder"] = [http_error(400)]
    with pytest.raises(PushError):
        push_export(export_dir, REPO)
    assert hub.names().count("upload_folder") == 1 and waits == []


# --- folder checks -------------------------------------------------------------


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "README.md", "tokenizer.json"])
def test_incomplete_export_is_refused_before_any_call(export_dir, hub, missing):
    (export_dir / missing).unlink()
    with pytest.raises(IncompleteExportError, match=missing.split(".")[0]):
        push_export(export_dir, REPO)
    assert hub.calls == []


def test_vocab_txt_counts_as_tokenizer(export_dir, hub, waits):
    (export_dir / "tokenizer.json").rename(export_dir / "vocab.txt")
    assert push_export(export_dir, REPO) == URL


# --- the token never leaks -----------------------------------------------------


def test_token_never_appears_anywhere(export_dir, hub, waits, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", MARKER)
    before = snapshot(export_dir)
    caplog.set_level(logging.DEBUG)
    # a server that echoes the token back in its error text, first transient then auth
    hub.failures["upload_folder"] = [http_error(502, f" (token={MARKER})"), http_error(401, f" Bearer {MARKER}")]
    with pytest.raises(AuthenticationError) as info:
        push_export(export_dir, REPO)
    texts = [str(info.value), repr(info.value), caplog.text]
    hub.failures["upload_folder"] = [http_error(500, f" {MARKER}") for _ in range(10)]
    code = push.main(["--model", str(export_dir), "--hub-model-id", REPO, "--max-retries", "1"])
    assert code == 1
    out, err = capsys.readouterr()
    texts += [out, err, caplog.text]
    for text in texts:
        assert MARKER not in text
    assert "***" in caplog.text  # the retry warnings were logged, with the token scrubbed
    assert "***" in err  # the final one-line error, scrubbed
    assert snapshot(export_dir) == before
    for content, _ in snapshot(export_dir).values():
        assert MARKER.encode() not in content


# --- the CLI -------------------------------------------------------------------


def test_cli_success_prints_url(export_dir, hub, waits, capsys):
    code = push.main(
        ["--model", str(export_dir), "--hub-model-id", REPO, "--hub-private", "--hub-revision", "dev"]
        + ["--hub-commit-message", "hello"]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == URL
    assert hub.calls[0][2]["private"] is True
    assert hub.calls[2][2]["revision"] == "dev" and hub.calls[2][2]["commit_message"] == "hello"


def test_cli_failure_is_one_line_exit_1(export_dir, hub, waits, capsys):
    hub.failures["create_repo"] = [http_error(401)]
    assert push.main(["--model", str(export_dir), "--hub-model-id", REPO]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: authentication failed")
    assert "Traceback" not in err


def test_cli_bad_arguments_exit_2(export_dir, hub, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        push.main(["--model", str(export_dir)])  # no --hub-model-id
    assert info.value.code == 2
    assert push.main(["--model", str(export_dir), "--hub_model_id", "not a/valid//id"]) == 2  # the config spelling
    assert push.main(["--model", str(tmp_path / "nowhere"), "--hub-model-id", REPO]) == 2
    (export_dir / "config.json").unlink()
    assert push.main(["--model", str(export_dir), "--hub-model-id", REPO]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "Traceback" not in err
    assert hub.calls == []


def test_cli_as_module_incomplete_export(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_TOKEN=MARKER,
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nerforge.push", "--model", str(folder), "--hub-model-id", REPO],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "not a complete export" in proc.stderr and "Traceback" not in proc.stderr
    assert MARKER not in proc.stdout + proc.stderr
