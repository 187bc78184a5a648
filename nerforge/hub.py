"""Push a finished export folder to the Hugging Face Hub, from training or from ``nerforge push``.

:func:`push_export` uploads the folder in one commit. The token comes from ``HF_TOKEN`` or from
``hf auth login``; it is never printed or written. Timeouts, connection errors, HTTP 429 and 5xx are
retried with backoff; 401/403/404 are not. A failed push leaves the local folder untouched: run the
same command again.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload NER model trained with nerforge"
# What a Hub token looks like: scrubbed from every message (and from the model card, nerforge.card).
TOKEN_VALUE_RE = re.compile(r"hf_[A-Za-z0-9]{16,}")
# What an export holds for this machine only, never uploaded: the static int8 package is machine code for
# the CPU and torch release that built it (nerforge quantize; nerforge.pt2_runtime).
LOCAL_ONLY = ("pt2/*",)

__all__ = [
    "LOCAL_ONLY",
    "push_export",
    "check_export_dir",
    "PushError",
    "IncompleteExportError",
    "AuthenticationError",
    "DEFAULT_COMMIT_MESSAGE",
    "TOKEN_VALUE_RE",
]


RETRY_HINT = "nerforge push --model OUTPUT_DIR/model --hub-model-id user/name"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


class PushError(RuntimeError):
    """A push to the Hub failed; the local export folder is untouched."""


class IncompleteExportError(PushError, ValueError):
    """The folder is not a complete export: nothing was pushed."""


class AuthenticationError(PushError):
    """401/403/404 from the Hub: missing, wrong or insufficient token (never retried)."""


def check_export_dir(export_dir: str | os.PathLike) -> Path:
    """Raise :class:`IncompleteExportError` unless ``export_dir`` holds weights
    (``model.safetensors`` or a sharded index), ``config.json``, ``README.md`` and a
    tokenizer file."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise IncompleteExportError(f"{folder} is not a folder: expected an export such as OUTPUT_DIR/model")
    missing = []
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        missing.append("model.safetensors")
    for name in ("config.json", "README.md"):
        if not (folder / name).is_file():
            missing.append(name)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("a tokenizer file (" + " / ".join(TOKENIZER_FILES[:3]) + ")")
    if missing:
        raise IncompleteExportError(
            f"{folder} is not a complete export, missing: {', '.join(missing)}. "
            "Re-run the export (training writes OUTPUT_DIR/model) before pushing."
        )
    return folder


def _known_tokens(token: str | None) -> list[str]:
    found = [t for t in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")) if t]
    try:
        from huggingface_hub import get_token

        cached = get_token()
        if cached:
            found.append(cached)
    except Exception:  # reading the local token file must never break a push
        pass
    return sorted(set(found), key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return TOKEN_VALUE_RE.sub("***", text)


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _transient_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [TimeoutError]
    try:
        import httpx2

        types += [httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError]
    except ImportError:  # pragma: no cover - huggingface_hub 2.x depends on httpx2
        pass
    try:
        import httpx

        types += [httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError]
    except ImportError:
        pass
    try:
        import requests

        types += [requests.exceptions.Timeout, requests.exceptions.ConnectionError]
    except ImportError:
        pass
    return tuple(types)


def _classify(exc: BaseException) -> str:
    """'auth', 'retry' or 'fatal'."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "fatal"
    code = _status_code(exc)
    if code is not None:
        if code in (401, 403, 404):
            return "auth"
        if code == 429 or code >= 500:
            return "retry"
        return "fatal"
    if isinstance(exc, _transient_types()) or isinstance(exc, ConnectionError):
        return "retry"
    return "fatal"


def push_export(
    export_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    max_retries: int = 3,
    backoff_s: float = 2.0,
    space_dir: str | os.PathLike | None = None,
    space_id: str | None = None,
) -> str:
    """Upload a finished export folder to ``repo_id`` on the Hub in one commit; return the commit URL.

    Token: ``token``, else ``HF_TOKEN``, else the login cached by ``hf auth login``.  The repo
    is created if needed (``exist_ok``), the ``revision`` branch too.  Timeouts, connection
    errors, HTTP 429 and 5xx are retried ``max_retries`` times with exponential backoff
    (``backoff_s``, ``2*backoff_s``, ...); 401/403/404 are not.  The local folder is only
    read.  Failures raise :class:`PushError` (token scrubbed from every message).  With ``space_dir``
    and ``space_id`` the Space folder (``nerforge demo --space``) is uploaded after the model, to a
    Gradio Space created if needed.
    """
    import huggingface_hub

    folder = check_export_dir(export_dir)
    token = token or os.environ.get("HF_TOKEN") or None
    secrets = _known_tokens(token)
    message = commit_message or DEFAULT_COMMIT_MESSAGE
    retry_hint = f"fix the cause and retry with: {RETRY_HINT}"

    api = huggingface_hub.HfApi(token=token, library_name="nerforge")

    def call(what: str, fn, *args, **kwargs):
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as PushError
                kind = _classify(exc)
                detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
                if kind == "auth":
                    raise AuthenticationError(
                        f"authentication failed for {repo_id}: set HF_TOKEN or run `hf auth login` "
                        f"(HTTP {_status_code(exc)} while trying to {what}; the token must have write "
                        f"access to the namespace). Local export unchanged; {retry_hint}"
                    ) from None
                if kind == "retry" and attempt < max_retries:
                    wait = backoff_s * (2**attempt)
                    attempt += 1
                    logger.warning("%s failed (%s); retry %d/%d in %.1fs", what, detail, attempt, max_retries, wait)
                    time.sleep(wait)
                    continue
                tried = f" after {attempt + 1} attempts" if kind == "retry" else ""
                raise PushError(
                    f"push to {repo_id} failed{tried} while trying to {what}: {detail}. "
                    f"Local export {folder} unchanged; {retry_hint}"
                ) from None

    call("create the repository", api.create_repo, repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        call(
            f"create branch {revision!r}", api.create_branch, repo_id, branch=revision, exist_ok=True, repo_type="model"
        )
    info = call(
        "upload the folder",
        api.upload_folder,
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=message,
        ignore_patterns=list(LOCAL_ONLY),
    )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed %s to %s", folder, url)
    if space_dir is not None:
        call(
            "create the Space",
            api.create_repo,
            space_id,
            private=private,
            exist_ok=True,
            repo_type="space",
            space_sdk="gradio",
        )
        call(
            "upload the Space",
            api.upload_folder,
            folder_path=str(space_dir),
            repo_id=space_id,
            repo_type="space",
            commit_message=message,
        )
        logger.info("pushed the Space %s to %s", space_dir, space_id)
    return str(url)
