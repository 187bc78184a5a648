"""A Hugging Face Space folder for an export (``nerforge demo --space DIR``): ``app.py`` (the demo page
over the model), ``requirements.txt`` pinned to the versions this page was tested with, and ``README.md``
with the Space's metadata. ``nerforge push --space-dir DIR --space-id ID`` uploads it with the model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["PINNED", "requirements", "write_space"]

# What the Space installs, pinned to this environment's versions (the ones the demo test ran with).
PINNED = ("nerforge", "gradio", "transformers", "tokenizers", "torch", "safetensors")

APP = '''"""nerforge demo of {model}: entities highlighted by type with their scores."""

from nerforge.demo_app import build_app
from nerforge.predictor import Predictor

MODEL = {model!r}

build_app(Predictor.from_pretrained(MODEL), MODEL, example={example!r}).launch()
'''

README = """---
title: {title}
emoji: 🏷️
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {gradio}
app_file: app.py
pinned: false
license: {license}
models:
- {model}
---

# {title}

Named entity recognition with [`{model}`](https://huggingface.co/{model}), fine-tuned with nerforge.
Type text, see the entities highlighted by type with their scores; a score threshold hides the
unsure ones. Made with `nerforge demo --space`.
"""


def requirements() -> str:
    """``requirements.txt``: every package of :data:`PINNED` at this environment's version."""
    lines = []
    for name in PINNED:
        try:
            lines.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise ValueError(f"cannot pin {name}: it is not installed here") from None
    return "\n".join(lines) + "\n"


def write_space(out_dir: str | Path, model_id: str, license: str = "apache-2.0", example: str | None = None) -> Path:
    """Write the Space folder for the Hub model ``model_id`` into ``out_dir`` (created; files replaced)."""
    from nerforge.atomic import atomic_write_text

    if "/" not in model_id or Path(model_id).exists():
        raise ValueError(f"a Space loads its model from the Hub: give its Hub id (owner/name), not {model_id!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = model_id.split("/")[-1]
    atomic_write_text(out / "app.py", APP.format(model=model_id, example=example or ""))
    atomic_write_text(out / "requirements.txt", requirements())
    atomic_write_text(
        out / "README.md", README.format(title=title, model=model_id, gradio=version("gradio"), license=license)
    )
    return out
