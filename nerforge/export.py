"""The export folder: what ``pipeline("ner", model=...)`` loads and what is pushed to the Hub.

:func:`export_run` assembles ``OUTPUT_DIR/model/`` (safetensors weights, tokenizer, ``config.json``
with the dataset's labels, the resolved ``training_config.yaml``, ``metrics.json``, the training curve,
the reliability diagram when the scores were calibrated, the ONNX files with ``export_onnx``, and the model card) under a temporary name and swaps it in when complete, so a killed run or a full
disk leaves the previous export in place. :func:`add_onnx` adds ``onnx/`` to an existing export the same
way (``nerforge onnx``). :func:`save_model_atomic` and :func:`load_weights` keep and
reload the best model during training the same way.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from nerforge.atomic import fresh_tmp, swap_in, write_json_atomic
from nerforge.card import plot_reliability, plot_training_curve, render_model_card
from nerforge.errors import ExportError
from nerforge.modeling import save_tokenizer

__all__ = [
    "ExportError",
    "export_run",
    "update_export",
    "update_metrics",
    "add_onnx",
    "save_model_atomic",
    "load_weights",
]


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
    """A fresh temporary folder beside `export_dir` to fill; swapped in when the block ends, removed on any
    failure (freeing the space); a full or unwritable disk becomes an ExportError saying what failed and
    that `unchanged` is so (an ExportError raised inside, e.g. a failed ONNX check, passes as it is)."""
    try:
        tmp = fresh_tmp(export_dir)
        yield tmp
        swap_in(tmp, export_dir)
    except BaseException as e:
        shutil.rmtree(export_dir.with_name(f".{export_dir.name}.tmp"), ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, ExportError):
            raise ExportError(f"{failure}: {e}; {unchanged}") from e
        raise


def _onnx_into(folder: Path, quantize_int8: bool) -> dict:
    """``folder/onnx/`` from the model saved in `folder` (loaded back on the CPU in fp32), verified
    (:func:`nerforge.onnx_export.export_onnx`); removed again when anything fails."""
    from nerforge.onnx_export import export_onnx
    from nerforge.onnx_runtime import ONNX_DIR, require_onnx

    require_onnx()
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    try:
        model = AutoModelForTokenClassification.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return export_onnx(model, tokenizer, folder / ONNX_DIR, quantize_int8=quantize_int8)
    except BaseException:
        shutil.rmtree(folder / ONNX_DIR, ignore_errors=True)
        raise


def _copy_export(src: Path, dst: Path, skip=()) -> None:
    """Every file and subfolder of the export `src` (but those named in `skip`) into `dst`."""
    for item in src.iterdir():
        if item.name in skip:
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
        elif item.is_file():
            shutil.copy2(item, dst / item.name)


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
    onnx_failure = None
    with _assembled(export_dir, failure, "any previous export there is unchanged") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(tokenizer, tmp)
        cfg.save(tmp / "training_config.yaml")
        plot_training_curve(metrics.get("history", []), tmp / "training_curve.png")
        if cfg.training.export_onnx:
            from nerforge.onnx_export import OnnxExportError

            try:
                _onnx_into(tmp, cfg.training.export_onnx_int8)
            except (OnnxExportError, ValueError) as e:  # a failed check, or the onnx extra missing
                onnx_failure = e
        _metrics_figures_card(tmp, cfg, metrics, label_names, getattr(tokenizer, "do_lower_case", None))
    if onnx_failure is not None:
        # The weights are good and worth keeping: the export is complete but for onnx/ (the card says so).
        flag = "" if cfg.training.export_onnx_int8 else " --no-int8"
        raise ExportError(
            f"{export_dir} was written without onnx/: {onnx_failure}; "
            f"retry with nerforge onnx --model {export_dir}{flag}"
        )
    return export_dir


def update_export(export_dir: str | Path, model, metrics: dict) -> Path:
    """Rewrite an existing export with new weights and metrics (e.g. after calibration): every other
    file is kept, the figures and the card are made again; swapped in whole, or not at all. With new
    weights ``onnx/`` is made again and ``pt2/`` (the int8 package, built from the old ones) left out."""
    from nerforge.config import load_saved
    from nerforge.onnx_runtime import INT8_FILE, ONNX_DIR
    from nerforge.pt2_runtime import PT2_DIR

    export_dir = Path(export_dir)
    with _assembled(export_dir, f"could not rewrite the export {export_dir}", "it is unchanged") as tmp:
        _copy_export(export_dir, tmp, skip=(ONNX_DIR, PT2_DIR))
        model.save_pretrained(tmp, safe_serialization=True)
        weights = "model.safetensors"
        same = (export_dir / weights).is_file() and filecmp.cmp(export_dir / weights, tmp / weights, shallow=False)
        # The int8 package froze a copy of the weights: kept with them, else left out (rebuilding it takes
        # calibration data and the int8 extra: nerforge quantize, as the calibrate command says).
        if same and (export_dir / PT2_DIR).is_dir():
            shutil.copytree(export_dir / PT2_DIR, tmp / PT2_DIR)
        onnx_dir = export_dir / ONNX_DIR
        if onnx_dir.is_dir():  # the ONNX files go with the weights: kept if these are unchanged, else made again
            if same:
                shutil.copytree(onnx_dir, tmp / ONNX_DIR)
            else:
                try:
                    _onnx_into(tmp, (onnx_dir / INT8_FILE).is_file())
                except ValueError as e:
                    raise ValueError(f"{onnx_dir} must be made again for the new weights: {e}") from None
        labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        _metrics_figures_card(tmp, load_saved(tmp / "training_config.yaml"), metrics, labels)
    return export_dir


def update_metrics(export_dir: str | Path, key: str, value) -> Path:
    """Set one top-level entry of an export's metrics.json (a report or audit summary) and render the
    figures and the card again around the export's own weights (:func:`update_export`)."""
    from transformers import AutoModelForTokenClassification

    export_dir = Path(export_dir)
    metrics = json.loads((export_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics[key] = value
    return update_export(export_dir, AutoModelForTokenClassification.from_pretrained(export_dir), metrics)


def add_onnx(export_dir: str | Path, quantize_int8: bool = False) -> dict:
    """Add (or replace) ``onnx/`` in an existing model folder: the fp32 graph and with `quantize_int8`
    the int8 one, verified (:func:`nerforge.onnx_export.export_onnx`); the card of a nerforge export is
    rendered again to list them. The folder is rewritten whole or not at all: a failed check or a
    killed process leaves it as it was. Returns ``onnx/verification.json``'s content; raises
    :class:`nerforge.onnx_export.OnnxExportError` (an :class:`ExportError`) when the export or a check fails."""
    from nerforge.config import load_saved
    from nerforge.onnx_runtime import ONNX_DIR

    export_dir = Path(export_dir)
    with _assembled(export_dir, f"could not write {export_dir / ONNX_DIR}", "the folder is unchanged") as tmp:
        _copy_export(export_dir, tmp, skip=(ONNX_DIR,))
        result = _onnx_into(tmp, quantize_int8)
        if (tmp / "training_config.yaml").is_file() and (tmp / "metrics.json").is_file():
            config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
            labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
            metrics = json.loads((tmp / "metrics.json").read_text(encoding="utf-8"))
            cfg = load_saved(tmp / "training_config.yaml")
            render_model_card(tmp, cfg, metrics=metrics, label_names=labels, repo_id=cfg.training.hub_model_id)
    return result
