"""The export folder: what ``pipeline("ner", model=...)`` loads and what is pushed to the Hub.

:func:`export_run` assembles ``OUTPUT_DIR/model/`` (safetensors weights, tokenizer, ``config.json``
with the dataset's labels, the resolved ``training_config.yaml``, ``metrics.json``, the training curve,
the reliability diagram when the scores were calibrated, and the model card) under a temporary name and swaps it in when complete, so a killed run or a full
disk leaves the previous export in place. :func:`save_model_atomic` and :func:`load_weights` keep and
reload the best model during training the same way.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from nerforge.atomic import fresh_tmp, swap_in, write_json_atomic
from nerforge.card import plot_reliability, plot_training_curve, render_model_card

__all__ = ["ExportError", "export_run", "update_export", "save_model_atomic", "load_weights"]


class ExportError(OSError):
    """The export could not be written; any previous export is unchanged."""


def save_model_atomic(model, folder: str | Path, is_main: bool, accelerator=None) -> None:
    """save_pretrained (safetensors) into `folder`, from the main process only."""
    if is_main:
        folder = Path(folder)
        tmp = fresh_tmp(folder)
        model.save_pretrained(tmp, safe_serialization=True)
        swap_in(tmp, folder)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def load_weights(folder: str | Path) -> dict:
    """State dict from a save_pretrained folder, single file or sharded (safetensors only)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(folder / shard))
        return state
    return load_file(folder / "model.safetensors")


@contextmanager
def _assembled(export_dir: Path, failure: str, unchanged: str):
    """A fresh temporary folder beside `export_dir` to fill; swapped in when the block ends, removed on a
    full or unwritable disk, with an ExportError saying what failed and that `unchanged` is so."""
    try:
        tmp = fresh_tmp(export_dir)
        yield tmp
        swap_in(tmp, export_dir)
    except OSError as e:
        shutil.rmtree(export_dir.with_name(f".{export_dir.name}.tmp"), ignore_errors=True)  # free the space
        raise ExportError(f"{failure}: {e}; {unchanged}") from e


def _metrics_figures_card(folder: Path, cfg, metrics: dict, label_names, do_lower_case=None) -> None:
    """metrics.json, the reliability diagram when the scores were calibrated, and the card."""
    write_json_atomic(folder / "metrics.json", metrics)
    if metrics.get("calibration"):
        plot_reliability(metrics["calibration"], folder / "calibration.png")
    render_model_card(
        folder,
        cfg,
        metrics=metrics,
        label_names=list(label_names),
        repo_id=cfg.training.hub_model_id,
        do_lower_case=do_lower_case,
    )


def export_run(model, tokenizer, cfg, metrics: dict, label_names, export_dir: str | Path) -> Path:
    """Write the export folder of a run (see the module docstring); raise :class:`ExportError` on a
    full or unwritable disk, leaving the previous export, if any, as it was."""
    export_dir = Path(export_dir)
    failure = f"could not write the export to {export_dir}"
    with _assembled(export_dir, failure, "any previous export there is unchanged") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        cfg.save(tmp / "training_config.yaml")
        plot_training_curve(metrics.get("history", []), tmp / "training_curve.png")
        _metrics_figures_card(tmp, cfg, metrics, label_names, getattr(tokenizer, "do_lower_case", None))
    return export_dir


def update_export(export_dir: str | Path, model, metrics: dict) -> Path:
    """Rewrite an existing export with new weights and metrics (e.g. after calibration): every other
    file is kept, the figures and the card are made again; swapped in whole, or not at all."""
    from nerforge.config import load_saved

    export_dir = Path(export_dir)
    with _assembled(export_dir, f"could not rewrite the export {export_dir}", "it is unchanged") as tmp:
        for item in export_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        model.save_pretrained(tmp, safe_serialization=True)
        labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        _metrics_figures_card(tmp, load_saved(tmp / "training_config.yaml"), metrics, labels)
    return export_dir
