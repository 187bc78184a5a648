"""Out-of-sample word logits of a training split by K-fold cross-fitting (``nerforge audit --split train
--folds K``).

A model cannot judge the labels it was trained on (it has learnt them, errors included), so the split
is cut into K folds of whole documents (document context never crosses a fold) and K models are trained
with the export's own training config, each on the other K-1 folds (validation split unchanged), then
asked about its own fold. Every fold lives in ``WORK/fold-I/``: ``data/`` (a ``save_to_disk`` dataset:
train = the other folds, validation, test = this fold), the run's output folder (checkpoints, export),
and ``heldout.npz`` (the fold's word logits), written last and atomically. A rerun skips the folds
whose ``heldout.npz`` is there and resumes a fold's training from its latest checkpoint: the command
is resumable per fold.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["document_folds", "fold_config", "cross_fit"]


def document_folds(document_ids: Sequence[int], k: int, seed: int = 0) -> list[int]:
    """The fold (0..k-1) of every sentence: documents shuffled with ``seed`` and dealt round-robin, so a
    document's sentences share a fold and fold sizes differ by at most one document."""
    if k < 2:
        raise ValueError(f"folds must be at least 2, not {k}")
    docs = list(dict.fromkeys(int(d) for d in document_ids))
    if len(docs) < k:
        raise ValueError(f"{k} folds need at least {k} documents; the split has {len(docs)}")
    random.Random(seed).shuffle(docs)
    fold_of = {d: i % k for i, d in enumerate(docs)}
    return [fold_of[int(d)] for d in document_ids]


def fold_config(cfg, dataset_path: str, output_dir: str):
    """The export's training config for one fold: its prepared dataset, its own output folder, resumed
    from the latest checkpoint there, and no extras (no Hub push, ONNX, calibration, pipeline figures or example)."""
    from nerforge.config import validate

    data = dataclasses.replace(
        cfg.data, dataset_path=dataset_path, data_dir=None, train_file=None, validation_file=None, test_file=None
    )
    training = dataclasses.replace(
        cfg.training,
        output_dir=output_dir,
        resume_from_checkpoint="latest",
        overwrite_output_dir=False,
        push_to_hub=False,
        export_onnx=False,
        evaluate_pipeline=False,
        calibrate=False,
        example_text=None,
        report_to="none",
    )
    return validate(dataclasses.replace(cfg, data=data, training=training))


def _save_npz(path: Path, logits: list) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    lengths = np.array([len(z) for z in logits], dtype=np.int64)
    flat = np.concatenate([np.asarray(z, dtype=np.float32) for z in logits]) if len(logits) else np.zeros((0, 0))
    np.savez(tmp, lengths=lengths, logits=flat)
    os.replace(tmp, path)


def _load_npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        lengths, flat = f["lengths"], f["logits"]
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


def cross_fit(
    cfg,
    splits,
    split: str,
    work_dir: Path,
    k: int,
    train_fold: Callable,
    load_predictor: Callable,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[list[np.ndarray], dict[int, str], list[int]]:
    """Word logits of every sentence of ``splits[split]`` from the fold model that did not train on it:
    (logits per sentence in the fold models' label order, model id -> dataset tag name, fold per sentence).

    ``train_fold(fold_cfg)`` runs the training loop (exit status 0 or an error); ``load_predictor(export)``
    returns a Predictor for a fold's export."""
    from datasets import DatasetDict

    from nerforge.metric import align_label_names
    from nerforge.scoring import predict_split

    data = splits[split]
    docs = data["document_id"] if "document_id" in data.column_names else list(range(len(data)))
    folds = document_folds(docs, k, seed)
    names = list(data.features["ner_tags"].feature.names)
    logits: list = [None] * len(data)
    to_name = None
    for i in range(k):
        fold_dir = work_dir / f"fold-{i}"
        held = [j for j, f in enumerate(folds) if f == i]
        result = fold_dir / "heldout.npz"
        if not result.is_file():
            data_dir = fold_dir / "data"
            if not (data_dir / "dataset_dict.json").is_file():
                parts = DatasetDict(
                    train=data.select([j for j, f in enumerate(folds) if f != i]),
                    validation=splits["validation"],
                    test=data.select(held),
                )
                tmp = fold_dir / "data.tmp"
                parts.save_to_disk(str(tmp))
                os.replace(tmp, data_dir)
            log(f"fold {i + 1}/{k}: training on {len(data) - len(held)} sentences, {len(held)} held out")
            status = train_fold(fold_config(cfg, str(data_dir), str(fold_dir / "run")))
            if status:
                raise RuntimeError(f"fold {i + 1}/{k}: training stopped with exit status {status}; run again to resume")
            predictor = load_predictor(str(fold_dir / "run" / "model"))
            pred = predict_split(predictor, data.select(held))
            _save_npz(result, [z.numpy() for z in pred["logits"]])
        else:
            log(f"fold {i + 1}/{k}: done before ({result})")
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(fold_dir / "run" / "model"))
        fold_names = align_label_names(config.id2label, names)
        if to_name is not None and fold_names != to_name:
            raise ValueError(f"fold {i + 1}/{k}: its labels differ from the other folds'")
        to_name = fold_names
        for j, z in zip(held, _load_npz(result)):
            logits[j] = z
    return logits, to_name, folds
