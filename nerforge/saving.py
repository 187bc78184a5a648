"""Writing runs to disk without ever leaving a half-written file or folder behind.

Every folder is written under a temporary name in the same parent and swapped in with os.replace
only once complete, so a killed run or a full disk leaves the previous version in place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nerforge import export
from nerforge.export import write_json_atomic


class ExportError(OSError):
    pass


def swap_in(tmp: Path, final: Path) -> None:
    """Replace `final` by the complete folder `tmp`; the old folder survives until the new one is in place."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def fresh_tmp(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


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


def export_run(model, tokenizer, cfg, metrics: dict, label_names, export_dir: str | Path) -> Path:
    """The folder that is pushed to the Hub and that pipeline('ner', model=...) loads: weights
    (safetensors), tokenizer, config.json with the dataset's labels, the resolved run config,
    metrics.json, the training curve and README.md (the model card)."""
    export_dir = Path(export_dir)
    try:
        tmp = fresh_tmp(export_dir)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        cfg.save(tmp / "training_config.yaml")
        write_json_atomic(tmp / "metrics.json", metrics)
        export.plot_training_curve(metrics.get("history", []), tmp / "training_curve.png")
        export.render_model_card(
            tmp,
            run_config=cfg.to_dict(),
            metrics=metrics,
            label_names=list(label_names),
            repo_id=cfg.training.hub_model_id,
            do_lower_case=getattr(tokenizer, "do_lower_case", None),
        )
        swap_in(tmp, export_dir)
    except OSError as e:
        shutil.rmtree(export_dir.with_name(f".{export_dir.name}.tmp"), ignore_errors=True)  # free the space
        raise ExportError(
            f"could not write the export to {export_dir}: {e}; any previous export there is unchanged"
        ) from e
    return export_dir
