"""The training loop: fine-tune a transformer encoder for named entity recognition with 🤗 Accelerate.

    nerforge train --config bert-large-cased [--learning-rate 3e-5 ...]
    accelerate launch train_accelerate.py --config configs/bert-large-cased.yaml     (the same loop)

One loop, read top to bottom in `run()`: config -> data -> model -> features -> loop (accumulate,
evaluate, checkpoint) -> best model on validation and test -> export (+ card, + push). The phases it
calls (loaders, evaluation, checkpoints) are the functions above it. Processes, precision and nodes
come from accelerate's own config; everything else from ours (nerforge/config.py). What it says goes
to the ``nerforge`` logger (main process only); the command (``nerforge.cli.train``) shows it.

:func:`train` returns the exit status (0 done; 1 the export or the push could not be written; 3 stopped
by SIGTERM, SIGINT or SIGUSR1 after writing a checkpoint, nerforge/preemption.py) and raises
:class:`RunError` (bad input or settings, a busy output folder) or :class:`CheckpointError` (a checkpoint
could not be written; earlier ones are intact).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, broadcast_object_list, set_seed
from datasets import concatenate_datasets
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from nerforge.atomic import usual_modes, write_json_atomic
from nerforge.calibration import calibrate_model, summary_line
from nerforge.card import RECOMMENDED_AGGREGATION
from nerforge.checkpoint import STATE_FILE, CheckpointInvalid, find_checkpoint, write_manifest
from nerforge.config import RunConfig, steps_between
from nerforge.dropout import FAST_DROPOUT_ATTENTION_FP32, use_fast_dropout, wants_fast_dropout
from nerforge.errors import CheckpointError, RunError
from nerforge.export import ExportError, export_run, load_weights, save_model_atomic
from nerforge.features import (
    LengthGroupedBatchSampler,
    WindowSettings,
    assemble_predictions,
    build_features,
    collate,
    has_documents,
    pad_multiple,
    sentence_alone_mask,
    special_token_layout,
)
from nerforge.hub import PushError, push_export
from nerforge.metric import score
from nerforge.modeling import (
    attention_dropout_of,
    attention_in_fp32,
    build_optimizers,
    build_tiny_bert,
    clip_grad_norm,
    load_model_and_tokenizer,
    position_limit,
    wants_fp32_attention,
)
from nerforge.predictor import Predictor
from nerforge.preemption import EXIT_PREEMPTED, StopSignals
from nerforge.runlock import LOCK_FILE, LockedError, RunLock
from nerforge.scoring import score_split


class _MainProcessLog:
    """The loop's messages, through the ``nerforge.training`` logger, from the (global) main process only."""

    def __init__(self, name: str):
        self._log = logging.getLogger(name)

    def _say(self, level: int, msg: str) -> None:
        from accelerate import PartialState

        if PartialState().is_main_process:
            self._log.log(level, msg)

    def info(self, msg: str) -> None:
        self._say(logging.INFO, msg)

    def warning(self, msg: str) -> None:
        self._say(logging.WARNING, msg)

    def error(self, msg: str) -> None:
        self._say(logging.ERROR, msg)


logger = _MainProcessLog(__name__)


@dataclass
class TrainState:
    """What a checkpoint records besides accelerate's state (weights, optimizers, RNGs)."""

    global_step: int = 0
    best_f1: float = -1.0
    best_step: int | None = None
    bad_evals: int = 0
    history: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------- setup


def make_accelerator(cfg: RunConfig) -> Accelerator:
    t = cfg.training
    out_dir = Path(t.output_dir)
    trackers = [] if t.report_to == "none" else t.report_to.split(",")
    # Under torchrun on a machine without GPUs, accelerate needs to be told to use CPU processes (gloo);
    # otherwise each process would believe it runs alone.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        # accelerate keeps its state per Python process: a second run in the same one (a notebook, a sweep
        # in one script) would inherit the first run's precision, accumulation and data loaders, whatever
        # its own environment says. Start from a clean state, as transformers' TrainingArguments does. (A
        # launched multi-process run trains once per process: nothing to inherit, nothing touched.)
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        log_with=trackers or None,
        cpu=world_size > 1 and not torch.cuda.is_available(),
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
    )
    mismatch = distribution_mismatch(os.environ, accelerator.distributed_type.value, accelerator.device.type)
    if mismatch:
        raise RunError(mismatch)
    if accelerator.num_processes != world_size:
        raise RunError(
            f"launched as {world_size} processes but accelerate sees {accelerator.num_processes}; "
            f"on CPU set ACCELERATE_USE_CPU=1"
        )
    # Sparse embedding updates: one process (no sparse all-reduce) and no fp16 loss scaling (accelerate
    # updates the scale after each optimizer's step: with two optimizers the second one's gradients
    # would be unscaled twice).
    if t.sparse_embedding_updates and (accelerator.num_processes > 1 or accelerator.mixed_precision == "fp16"):
        raise RunError(
            "sparse_embedding_updates is implemented for a single process without fp16 only; set it "
            f"to false for this run ({accelerator.num_processes} process(es), precision "
            f"{accelerator.mixed_precision})"
        )
    return accelerator


# What `accelerate launch` sets when its config asks for a sharded setup, and the distributed type that
# must then be running.
SHARDED_LAUNCHES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED"}


def distribution_mismatch(env, got: str, device: str) -> str | None:
    """What is wrong when the launch asked for FSDP or DeepSpeed and accelerate set up something else
    (on a machine without GPUs accelerate runs such configs as plain DDP or one-process worlds, silently);
    None when it got what was asked."""
    for var, wanted in SHARDED_LAUNCHES.items():
        if str(env.get(var, "")).lower() in ("1", "true", "yes") and got != wanted:
            return (
                f"the launch asked for {wanted} ({var}) but accelerate set up {got} on {device}; {wanted} needs "
                f"GPUs (accelerate runs it as {got} elsewhere): launch without that config, e.g. "
                f"--config_file configs/accelerate/cpu-2proc.yaml"
            )
    return None


def describe_distribution(model, distributed_type: str, num_processes: int) -> str:
    """What the prepared model is, for the startup summary (and the GPU check's assertions): ``FSDP:
    N of M parameter tensors sharded (DTensor)``, ``DEEPSPEED: ZeRO stage S``, ``MULTI_GPU: DDP over N
    processes`` or ``NO: one process``."""
    if distributed_type == "FSDP":
        params = list(model.parameters())
        sharded = sum(
            type(p).__name__ == "DTensor" or type(getattr(p, "data", None)).__name__ == "DTensor" for p in params
        )
        return f"FSDP: {sharded} of {len(params)} parameter tensors sharded (DTensor) over {num_processes} process(es)"
    if distributed_type == "DEEPSPEED":
        stage = model.zero_optimization_stage() if hasattr(model, "zero_optimization_stage") else "unknown"
        return f"DEEPSPEED: ZeRO stage {stage} over {num_processes} process(es)"
    wrapper = type(model).__name__
    if num_processes > 1:
        return f"{distributed_type}: {wrapper} over {num_processes} processes"
    return f"{distributed_type}: one process ({wrapper})"


def lock_output_dir(cfg: RunConfig, accelerator: Accelerator) -> RunLock | None:
    """The main process takes the output folder's lock; every process stops (exit 2) when another run
    holds it."""
    lock, error = None, None
    if accelerator.is_main_process:
        lock = RunLock(Path(cfg.training.output_dir))
        try:
            warning = lock.acquire()
            if warning:
                logger.warning(warning)
        except LockedError as e:
            lock, error = None, str(e)
    error = broadcast_object_list([error])[0]  # the others learn the outcome from the main process
    if error:
        raise RunError(error)
    return lock


def prepare_output_dir(cfg: RunConfig, accelerator: Accelerator) -> Path:
    """The run's folder, with its checkpoints/ folder; a finished or running experiment is never
    overwritten by accident."""
    t = cfg.training
    out_dir = Path(t.output_dir)
    held = [p for p in out_dir.iterdir() if p.name != LOCK_FILE] if out_dir.is_dir() else []
    if t.resume_from_checkpoint is None and held:
        if not t.overwrite_output_dir:
            raise RunError(
                f"{out_dir} already holds a run; pass --overwrite-output-dir to replace it "
                f"or --resume-from-checkpoint latest to continue it"
            )
        if accelerator.is_main_process:  # everything but the lock this run holds
            for p in held:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out_dir


def load_data(cfg: RunConfig, accelerator: Accelerator):
    """The splits, read once by the main process (datasets caches them), then by the others."""
    from conll2003_loader import load_splits

    try:
        with accelerator.main_process_first():
            raw = load_splits(**cfg.data.loader_kwargs())
    except (ValueError, OSError) as e:  # ConllFormatError is a ValueError naming file and line
        raise RunError(str(e)) from None
    missing = [split for split in ("train", "validation") if split not in raw]
    if missing:
        raise RunError(f"training needs a train and a validation split; missing: {', '.join(missing)}")
    return raw


def document_context_for(cfg: RunConfig, raw, explicit: frozenset) -> str | None:
    """Document context needs documents: for a training split without any, context and packing are turned
    off (the notice to show is returned) unless they were asked for on the command line (a RunError)."""
    d = cfg.data
    train = raw["train"]
    if not (d.context_size or d.pack_length) or has_documents(
        train["document_id"] if "document_id" in train.column_names else None
    ):
        return None
    asked = sorted(k for k in ("context_size", "pack_length", "sentence_alone_fraction") if k in explicit)
    if asked:
        flags = ", ".join("--" + k.replace("_", "-") for k in asked)
        raise RunError(
            f"{flags}: the training data has no document boundaries (no -DOCSTART- lines), so document "
            "context would join unrelated sentences; leave it out for this corpus"
        )
    d.context_size, d.pack_length, d.sentence_alone_fraction = 0, 0, 0.0
    return (
        "the training data has no document boundaries (no -DOCSTART- lines): document context and packing "
        f"are off for this run (one sentence per window; per_device_train_batch_size is "
        f"{cfg.training.per_device_train_batch_size} sentences)"
    )


def load_model(cfg: RunConfig, raw, label_names, out_dir: Path, accelerator: Accelerator):
    """The encoder with a fresh head for the dataset's labels, and its tokenizer."""
    model_path = cfg.model.model_name_or_path
    if cfg.model.tiny_model:  # offline demo and tests: a 2-layer BERT with a vocabulary from the data
        model_path = str(out_dir / "tiny_model_init")
        with accelerator.main_process_first():
            if accelerator.is_main_process and not Path(model_path, "config.json").exists():
                words = (w for split in raw.values() for sent in split["tokens"] for w in sent)
                build_tiny_bert(words, label_names, model_path, seed=cfg.training.seed)
    model, tokenizer = load_model_and_tokenizer(
        model_path,
        label_names,
        cfg.model.revision,
        cfg.model.trust_remote_code,
        cfg.model.keep_words_whole,
        attention_dropout=cfg.model.attention_dropout,
    )
    precision, device = accelerator.mixed_precision, accelerator.device.type
    attention_dropout = attention_dropout_of(model.config)
    fp32_attention = wants_fp32_attention(cfg.training.attention_precision, precision, device, attention_dropout)
    if wants_fast_dropout(cfg.training.dropout_masks, device):
        swapped, attention = use_fast_dropout(model, attention_dropout, fp32_attention)
        logger.info(
            f"dropout masks: fast, {swapped} dropout modules"
            + (" and the attention's" if attention else "")
            + f" (dropout_masks {cfg.training.dropout_masks})"
        )
        fp32_attention_set = attention == FAST_DROPOUT_ATTENTION_FP32
    else:
        fp32_attention_set = fp32_attention and attention_in_fp32(model)
    if fp32_attention_set:
        logger.info(f"attention in fp32 under {precision} (attention_precision {cfg.training.attention_precision})")
    elif fp32_attention:
        logger.info(
            f"attention_precision {cfg.training.attention_precision}: {model_path} does not use transformers' "
            f"SDPA attention ({model.config._attn_implementation}); its attention stays in {precision}"
        )
    limit = position_limit(model.config)
    if limit is not None and cfg.data.max_length > limit:
        raise RunError(f"max_length {cfg.data.max_length} exceeds {model_path}'s {limit} positions")
    return model, tokenizer, model_path


def get_dataloaders(cfg: RunConfig, raw, tokenizer, label_names, accelerator: Accelerator):
    """Word pieces, windows and labels for every split (a cached batched map), the length-grouped
    training loader and length-sorted evaluation loaders."""
    d, t = cfg.data, cfg.training
    windows = WindowSettings.from_config(cfg)
    features = partial(
        build_features,
        tokenizer=tokenizer,
        label_all_tokens=d.label_all_tokens,
        label_edge_punctuation=d.label_edge_punctuation,
        label_names=label_names,
        num_proc=d.preprocessing_num_workers,
    )
    with accelerator.main_process_first():
        feats = {
            name: features(split, windows=windows)
            for name, split in raw.items()
            if name != "train" or not d.sentence_alone_fraction
        }
        if d.sentence_alone_fraction:
            # Some training documents one sentence at a time, without context: the model then also
            # learns to tag what pipeline('ner') gives it. Evaluation keeps the context.
            train = raw["train"]
            docs = train["document_id"] if "document_id" in train.column_names else range(len(train))
            alone = sentence_alone_mask(docs, d.sentence_alone_fraction, t.seed)
            parts = []
            for flag, w in ((False, windows), (True, windows.alone())):
                rows = [i for i, a in enumerate(alone) if a == flag]
                if rows:
                    parts.append(features(train.select(rows), windows=w))
            feats["train"] = concatenate_datasets(parts)
    sampler, train_dl = train_loader(
        feats["train"],
        feats["train"]["length"],
        t.per_device_train_batch_size,
        seed=t.seed,
        pad_id=tokenizer.pad_token_id,
        device_type=accelerator.device.type,
        num_workers=t.dataloader_num_workers,
    )
    pad = partial(collate, pad_id=tokenizer.pad_token_id, multiple_of=pad_multiple(accelerator.device.type))
    # Sorted by length: little padding; the order does not matter to the score.
    eval_dls = {
        split: DataLoader(
            feats[split].sort("length"),
            batch_size=t.per_device_eval_batch_size,
            collate_fn=pad,
            generator=torch.Generator().manual_seed(t.seed),
        )
        for split in ("validation", "test")
        if split in feats
    }
    return len(feats["train"]), sampler, train_dl, eval_dls


def train_loader(
    dataset, lengths, batch_size: int, *, seed: int, pad_id: int, device_type: str, num_workers=0, transform=None
):
    """The training loader (bench/gpu.py measures this one): batches of windows of similar length in an
    order set by (seed, epoch), padded per batch to the device's multiple, pinned memory on CUDA.
    ``transform``, if given, is applied to every padded batch. Returns (sampler, loader)."""
    sampler = LengthGroupedBatchSampler(lengths, batch_size, seed=seed)
    pad = partial(collate, pad_id=pad_id, multiple_of=pad_multiple(device_type))
    # Its own generator: starting an iterator then draws no number from the global RNG, whose stream
    # (dropout) must be the same in a resumed run as in an uninterrupted one.
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=pad if transform is None else (lambda rows: transform(pad(rows))),
        num_workers=num_workers,
        pin_memory=device_type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )
    return sampler, loader


def training_step(model, batch, optimizers, *, backward, clip=None):
    """One micro-step: forward with labels, backward, clip (when given), every optimizer's step; the loss,
    detached. The loop runs it inside ``accelerator.accumulate`` with accelerate's backward and clipping;
    bench/gpu.py measures this same step with plain ones."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    backward(out.loss)
    if clip is not None:
        clip()
    for o in optimizers:
        o.step()
        o.zero_grad()
    return out.loss.detach()


def clip_gradients(accelerator: Accelerator, model, max_norm: float, sparse: bool) -> None:
    if sparse:  # accelerate's clipping skips sparse gradients; ours puts them into the same norm
        clip_grad_norm(model.parameters(), max_norm)
    else:
        accelerator.clip_grad_norm_(model.parameters(), max_norm)


# ---------------------------------------------------------------------------------------- checkpoints


def batch_layout(cfg: RunConfig, accelerator: Accelerator) -> dict:
    """What decides which windows one optimizer step takes: a run resumed with another layout must keep
    the per-device batch and processes x accumulation (then every step sees the same windows)."""
    return {
        "num_processes": accelerator.num_processes,
        "per_device_train_batch_size": cfg.training.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.training.gradient_accumulation_steps,
    }


def check_layout(saved: dict, now: dict, ckpt: Path) -> None:
    """Continue with a different number of processes only when the effective batch and the data order
    stay the same (accumulation adjusted); otherwise say what to pass."""
    if not saved or saved == now:
        return
    was = f"{saved['num_processes']} process(es) x batch {saved['per_device_train_batch_size']} x accumulation {saved['gradient_accumulation_steps']}"
    is_ = f"{now['num_processes']} x {now['per_device_train_batch_size']} x {now['gradient_accumulation_steps']}"
    per_step = saved["num_processes"] * saved["gradient_accumulation_steps"]
    if saved["per_device_train_batch_size"] != now["per_device_train_batch_size"]:
        hint = f"pass --per-device-train-batch-size {saved['per_device_train_batch_size']}"
    elif now["num_processes"] * now["gradient_accumulation_steps"] == per_step:
        return  # same windows per optimizer step, split differently between processes and micro-steps
    elif per_step % now["num_processes"] == 0:
        hint = f"pass --gradient-accumulation-steps {per_step // now['num_processes']}"
    else:
        hint = f"resume with a number of processes that divides {per_step}"
    raise RunError(f"{ckpt} was written by {was}; this run has {is_}: {hint} to keep the effective batch")


def resume(cfg: RunConfig, accelerator: Accelerator, ckpt_dir: Path, spec: str, schedulers) -> TrainState:
    # The main process verifies the manifests (reading every byte once) and tells the others.
    ckpt, error = None, None
    if accelerator.is_main_process:
        try:
            ckpt = find_checkpoint(ckpt_dir, spec)
        except CheckpointInvalid as e:
            error = str(e)
    ckpt, error = broadcast_object_list([ckpt, error])
    if error:
        raise RunError(error)
    if ckpt is None:
        logger.info(f"no complete checkpoint in {ckpt_dir} yet: starting from step 0")
        return TrainState()
    saved = json.loads((ckpt / STATE_FILE).read_text())
    check_layout(saved.pop("layout", {}), batch_layout(cfg, accelerator), ckpt)
    accelerator.load_state(str(ckpt))  # weights, optimizers, RNG states of every process
    sched = saved.pop("scheduler")
    for scheduler, sd in zip(schedulers, sched if isinstance(sched, list) else [sched], strict=True):
        scheduler.load_state_dict(sd)
    state = TrainState(**saved)
    logger.info(f"resumed from {ckpt} at step {state.global_step}")
    return state


def save_checkpoint(accelerator: Accelerator, state: TrainState, schedulers, cfg: RunConfig, ckpt_dir: Path):
    """accelerate's save_state plus our state, config and manifest, written under a temporary name and
    renamed when complete: a run killed mid-save never leaves a half-written folder that looks like a
    checkpoint, and one that cannot be written (a full disk) leaves the previous ones as they were."""
    final = ckpt_dir / f"step-{state.global_step:06d}"
    tmp = ckpt_dir / f".tmp-step-{state.global_step:06d}"
    main_proc = accelerator.is_main_process
    if main_proc and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    error = None

    def failed_anywhere() -> bool:  # every process says whether its part is written
        return bool(accelerator.reduce(torch.tensor(int(error is not None), device=accelerator.device), "sum").item())

    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    except OSError as e:
        error = e
    failed = failed_anywhere()  # before the main process seals the folder
    if main_proc and not failed:
        try:
            # The schedulers' small state goes here rather than through register_for_checkpointing,
            # which accelerate reloads with an unrestricted pickle.
            layout = batch_layout(cfg, accelerator)
            scheds = [s.state_dict() for s in schedulers]
            write_json_atomic(tmp / STATE_FILE, {**asdict(state), "scheduler": scheds, "layout": layout})
            cfg.save(tmp / "training_config.yaml")
            usual_modes(tmp)  # files written through temporary files are owner-only until here
            write_manifest(tmp)  # last: sizes and sha256 of everything above
        except OSError as e:
            error = e
    if failed_anywhere():
        if main_proc:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = sorted(ckpt_dir.glob("step-*"))
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        cause = error or "it failed on another process (see its log)"
        raise CheckpointError(f"could not write checkpoint {final}: {cause}; {kept}")
    if main_proc:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        kept = sorted(ckpt_dir.glob("step-*"))
        for old in kept[: max(0, len(kept) - max(1, cfg.training.save_total_limit))]:
            # Renamed first: a run stopped while deleting never leaves a half-deleted step-* folder.
            doomed = old.with_name(".old-" + old.name)
            os.replace(old, doomed)
            shutil.rmtree(doomed)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model, loader, split, label_names, accelerator: Accelerator) -> dict:
    """Predict every word of `split` once (windows are scattered back to words) and score it."""
    model.eval()
    preds, words, examples, losses = [], [], [], []
    for batch in loader:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        losses.append(accelerator.gather_for_metrics(out.loss.detach().reshape(1)).mean())
        p, w = accelerator.pad_across_processes((out.logits.argmax(-1), batch["word_index"]), dim=1, pad_index=-1)
        p, w, e = accelerator.gather_for_metrics((p, w, batch["example_id"]))
        preds += p.cpu().tolist()
        words += w.cpu().tolist()
        examples += e.cpu().tolist()
    model.train()
    gold = [[label_names[t] for t in tags] for tags in split["ner_tags"]]
    pred_ids = assemble_predictions(preds, words, examples, [len(g) for g in gold])
    result = score(gold, [[label_names[i] for i in sent] for sent in pred_ids])
    result["loss"] = float(torch.stack(losses).mean()) if losses else float("nan")
    return result


def sentence_alone_scores(predictor: Predictor, split) -> dict:
    """Entity-level micro precision, recall and F1 of ``predictor`` (built without document context)."""
    m = score_split(predictor, split)
    return {k: m[k] for k in ("precision", "recall", "f1")}


def evaluate_and_keep_best(
    model, loader, split, label_names, accelerator, state: TrainState, steps_per_epoch: int, patience: int, best_dir
) -> bool:
    """Evaluate on validation, record it, keep the best model so far; True when early stopping says stop."""
    res = evaluate(model, loader, split, label_names, accelerator)
    step = state.global_step
    entry = {"step": step, "epoch": round(step / steps_per_epoch, 3), "eval_f1": res["f1"], "eval_loss": res["loss"]}
    state.history.append(entry)
    accelerator.log(
        {
            "eval/f1": res["f1"],
            "eval/loss": res["loss"],
            "eval/precision": res["precision"],
            "eval/recall": res["recall"],
        },
        step=step,
    )
    logger.info(f"step {step}: validation F1 {100 * res['f1']:.2f} (loss {res['loss']:.4f})")
    if res["f1"] > state.best_f1:
        state.best_f1, state.best_step, state.bad_evals = res["f1"], step, 0
        save_model_atomic(accelerator.unwrap_model(model), best_dir, accelerator.is_main_process, accelerator)
    else:
        state.bad_evals += 1
    return bool(patience) and state.bad_evals >= patience


# ---------------------------------------------------------------------------------------- the run


def train(cfg: RunConfig, explicit: frozenset = frozenset()) -> int:
    """Run the loop; ``explicit`` names the settings given on the command line (they are never changed
    behind the user's back: a setting the data cannot honour is then an error instead of a notice)."""
    # ------------------------------------------------------------------ accelerator and output folder
    accelerator = make_accelerator(cfg)
    lock = lock_output_dir(cfg, accelerator)  # held by the main process until the run ends
    try:
        return run(cfg, accelerator, explicit)
    finally:
        if lock is not None:
            lock.release()


def run(cfg: RunConfig, accelerator: Accelerator, explicit: frozenset = frozenset()) -> int:
    t = cfg.training
    log = logger.info
    set_seed(t.seed)
    if t.tf32 and accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out_dir = prepare_output_dir(cfg, accelerator)
    ckpt_dir, best_dir = out_dir / "checkpoints", out_dir / "best_model"

    # ------------------------------------------------------------------ data, model, features
    raw = load_data(cfg, accelerator)
    notice = document_context_for(cfg, raw, explicit)
    if notice:
        log(notice)
    label_names = raw["train"].features["ner_tags"].feature.names
    model, tokenizer, model_path = load_model(cfg, raw, label_names, out_dir, accelerator)
    n_windows, sampler, train_dl, eval_dls = get_dataloaders(cfg, raw, tokenizer, label_names, accelerator)

    # ------------------------------------------------------------------ optimizer and schedule
    optimizers = build_optimizers(model, t.learning_rate, t.weight_decay, t.sparse_embedding_updates)
    n = len(optimizers)
    model, *prepared = accelerator.prepare(model, *optimizers, train_dl, *eval_dls.values())
    optimizers, train_dl, eval_dls = prepared[:n], prepared[n], dict(zip(eval_dls, prepared[n + 1 :]))
    steps_per_epoch = math.ceil(len(train_dl) / t.gradient_accumulation_steps)
    # max_steps 0: no training; the model as loaded is evaluated and exported.
    max_steps = t.max_steps if t.max_steps >= 0 else math.ceil(t.num_train_epochs * steps_per_epoch)
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    warmup = math.ceil(t.warmup_ratio * max_steps)
    # One scheduler per optimizer, stepped by us once per optimizer step and not prepared (a prepared
    # scheduler steps once per process).
    schedulers = [
        get_scheduler(t.lr_scheduler_type, o, num_warmup_steps=warmup, num_training_steps=max_steps) for o in optimizers
    ]
    eval_every = steps_between(t.eval_steps, max_steps, steps_per_epoch)
    save_every = steps_between(t.save_steps, max_steps, steps_per_epoch)
    log_every = steps_between(t.logging_steps, max_steps, steps_per_epoch)
    evaluations = math.ceil(max_steps / eval_every) if max_steps else 0

    # ------------------------------------------------------------------ resume
    state = (
        resume(cfg, accelerator, ckpt_dir, t.resume_from_checkpoint, schedulers)
        if t.resume_from_checkpoint
        else TrainState()
    )
    start_epoch, done_in_epoch = divmod(state.global_step, steps_per_epoch)

    # ------------------------------------------------------------------ startup summary
    n_proc = accelerator.num_processes
    effective = t.per_device_train_batch_size * n_proc * t.gradient_accumulation_steps
    log(
        f"***** training {model_path} on {accelerator.device} ({n_proc} process(es), precision {accelerator.mixed_precision}) *****\n"
        f"  sentences train/validation/test: {' / '.join(str(len(s)) for s in raw.values())}; "
        f"training windows: {n_windows}; labels: {len(label_names)} ({cfg.data.tagging_scheme})\n"
        f"  epochs: {num_epochs}; batch per device: {t.per_device_train_batch_size}; effective batch "
        f"(per device x processes x accumulation): {effective}\n"
        f"  optimizer steps: {max_steps} ({steps_per_epoch} per epoch); warmup: {warmup}"
        + ("; TF32 matrix products on" if t.tf32 and accelerator.device.type == "cuda" else "")
        + f"\n  evaluation every {eval_every} steps ({evaluations} in all); checkpoint every {save_every} steps"
        + f"\n  distributed: {describe_distribution(model, accelerator.distributed_type.value, n_proc)}"
    )
    if 0 < evaluations < 2:
        logger.warning(
            f"this run evaluates only once ({max_steps} optimizer steps, evaluation every {eval_every}): the best "
            f"model is the last one and no checkpoint is written before the end; set eval_steps and save_steps "
            f"to a fraction of the run (e.g. 0.2) or fewer steps"
        )
    accelerator.init_trackers(
        "nerforge",
        config={
            f"{s}.{k}": v if isinstance(v, (int, float, str, bool)) else str(v)
            for s, sec in cfg.to_dict().items()
            for k, v in sec.items()
        },
    )

    # Evaluation on validation, keeping the best model (and saying when early stopping says stop).
    validate = partial(
        evaluate_and_keep_best,
        model,
        eval_dls["validation"],
        raw["validation"],
        label_names,
        accelerator,
        state,
        steps_per_epoch,
        t.early_stopping_patience,
        best_dir,
    )

    # ------------------------------------------------------------------ training loop
    # SIGTERM / SIGINT / SIGUSR1 (preemption, Slurm's warning, Ctrl-C) stop the loop after the optimizer
    # step in progress, with a checkpoint; every process stops at the same step (nerforge/preemption.py).
    preempted = False
    clip = partial(clip_gradients, accelerator, model, t.max_grad_norm, t.sparse_embedding_updates)
    model.train()
    progress = tqdm(
        total=max_steps, initial=state.global_step, disable=not accelerator.is_local_main_process, desc="training"
    )
    # Durations on the monotonic clock: a VM's wall clock can step mid-run (one 40-step run measured 58 s
    # of training inside a 24 s process on time.time()).
    running_loss, running_n, stop, t0 = torch.zeros((), device=accelerator.device), 0, False, time.perf_counter()
    # Throughput of this process's training steps alone (evaluation and checkpoints excluded).
    # Word pieces are summed on the device: converting every step would force a GPU sync per step.
    seen_windows, seen_pieces, paused_s = 0, torch.zeros((), dtype=torch.long, device=accelerator.device), 0.0
    with StopSignals() as signals, progress:  # the bar is closed (one last line) even on an error
        for epoch in range(start_epoch, num_epochs if state.global_step < max_steps else start_epoch):
            sampler.set_epoch(epoch)  # batch order is a function of (seed, epoch): every process agrees
            loader = train_dl
            if epoch == start_epoch and done_in_epoch:
                loader = accelerator.skip_first_batches(train_dl, done_in_epoch * t.gradient_accumulation_steps)
            for batch in loader:
                with accelerator.accumulate(model):
                    # accelerate's prepared optimizers skip their step until the last micro-step
                    loss = training_step(
                        model,
                        batch,
                        optimizers,
                        backward=accelerator.backward,
                        clip=clip if accelerator.sync_gradients else None,
                    )
                running_loss += loss
                running_n += 1
                seen_windows += batch["input_ids"].shape[0]
                seen_pieces += batch["attention_mask"].sum()
                if not accelerator.sync_gradients:
                    continue
                for sch in schedulers:
                    sch.step()
                state.global_step += 1
                step = state.global_step
                progress.update(1)
                if step % log_every == 0 or step == max_steps:
                    loss = accelerator.reduce(running_loss / running_n, "mean").item()
                    lr = schedulers[0].get_last_lr()[0]
                    state.history.append(
                        {"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": loss, "learning_rate": lr}
                    )
                    accelerator.log({"train/loss": loss, "train/learning_rate": lr}, step=step)
                    progress.set_postfix(loss=f"{loss:.4f}")
                    running_loss.zero_()
                    running_n = 0
                pause = time.perf_counter()
                if step % eval_every == 0 or step == max_steps:
                    stop = validate()
                saved = step % save_every == 0 or step == max_steps or stop
                if saved:
                    save_checkpoint(accelerator, state, schedulers, cfg, ckpt_dir)
                # One process may have been signalled: all agree. Alone, the flag is read on the host; with
                # several processes it costs one small all-reduce (and a wait for the device) per step.
                preempted = bool(signals.received)
                if n_proc > 1:
                    received = torch.tensor(signals.received or 0, device=accelerator.device)
                    preempted = bool(accelerator.reduce(received, "sum").item())
                if preempted and not saved:
                    save_checkpoint(accelerator, state, schedulers, cfg, ckpt_dir)
                paused_s += time.perf_counter() - pause
                if preempted or stop or step >= max_steps:
                    break
            if preempted or stop or state.global_step >= max_steps:
                break
    if preempted:
        why = signals.name or "a signal to another process"
        log(
            f"stopped by {why} after step {state.global_step} with a checkpoint in {ckpt_dir}; to continue, "
            f"run the same command with --resume-from-checkpoint latest (exit status {EXIT_PREEMPTED})"
        )
        accelerator.end_training()
        return EXIT_PREEMPTED
    train_runtime = time.perf_counter() - t0
    step_time = max(train_runtime - paused_s, 1e-9)

    # ------------------------------------------------------------------ final evaluation of the best model
    accelerator.wait_for_everyone()
    if state.best_step is None:  # no evaluation happened (e.g. a resumed run that had finished)
        validate()
    accelerator.unwrap_model(model).load_state_dict(load_weights(best_dir), strict=True)
    metrics = {split: evaluate(model, dl, raw[split], label_names, accelerator) for split, dl in eval_dls.items()}
    metrics.update(
        best_step=state.best_step,
        history=state.history,
        num_processes=n_proc,
        effective_batch_size=effective,
        train_runtime_s=round(train_runtime, 2),
        train_windows_per_s=round(seen_windows * n_proc / step_time, 2),
        train_pieces_per_s=round(int(seen_pieces) * n_proc / step_time, 1),
        train_step_time_s=round(step_time, 2),
        # what a window holds: several sentences with packed document context (sentences/s = windows/s
        # x train_sentences / train_windows; an epoch = train_windows / windows/s)
        train_sentences=len(raw["train"]),
        train_windows=n_windows,
        mixed_precision=accelerator.mixed_precision,
    )
    for split in eval_dls:
        m = metrics[split]
        log(
            f"{split}: precision {100 * m['precision']:.2f} recall {100 * m['recall']:.2f} "
            f"F1 {100 * m['f1']:.2f} (entity-level micro, conlleval); "
            f"seqeval weighted F1 {100 * m['weighted_f1']:.2f}"
        )

    d = cfg.data
    windows = WindowSettings.from_config(cfg)
    predictor = partial(Predictor, accelerator.unwrap_model(model), tokenizer, device=accelerator.device)

    # ------------------------------------------------------------------ sentence by sentence (main process)
    # pipeline("ner"), and anyone else who tags one sentence at a time, never sees document context: a model
    # trained with it is scored that way too, so that the card says what those users get.
    if (d.context_size or d.pack_length) and accelerator.is_main_process:
        alone = predictor(windows.alone())
        metrics["sentence_alone"] = {s: sentence_alone_scores(alone, raw[s]) for s in eval_dls}
        for split, m in metrics["sentence_alone"].items():
            log(f"{split}, each sentence alone (as pipeline('ner') sees it): F1 {100 * m['f1']:.2f}")

    # ------------------------------------------------------------------ calibration (main process)
    # One temperature fitted on the validation words and folded into the classifier: scores change,
    # tags and the F1 above do not (nerforge/calibration.py). The predictor uses the training windows.
    if t.calibrate and accelerator.is_main_process:
        calibrated = predictor(windows)
        metrics["calibration"] = calibrate_model(calibrated, {s: raw[s] for s in eval_dls})
        log(f"calibrated: {summary_line(metrics['calibration'])}")

    # ------------------------------------------------------------------ what pipeline("ner") users get (main process)
    # The export's tokenizer says how long one input may be: the longest window the model was trained
    # on, so that pipeline('ner') cuts a long document into inputs like those. With the export's 512 the
    # pipeline fed whole documents lost 0.8 F1 against ours; with the training windows' 256, none
    # (BENCHMARKS.md, "What a pipeline user gets"). Then the model is scored through the pipeline itself,
    # fed one sentence and one document per call (nerforge/pipeline_scores.py).
    tokenizer.model_max_length = training_window_length(windows, tokenizer)
    if t.evaluate_pipeline and accelerator.is_main_process:
        metrics["pipeline"] = pipeline_figures(
            accelerator.unwrap_model(model), tokenizer, raw, eval_dls, d, accelerator
        )
        for mode in ("document", "sentence"):
            figures = ", ".join(f"{s} F1 {100 * m['f1']:.2f}" for s, m in metrics["pipeline"][mode].items())
            log(f"pipeline('ner'), one {mode} per call: {figures}")

    # ------------------------------------------------------------------ export, card, push (main process)
    status = 0
    if accelerator.is_main_process:
        try:
            publish(cfg, accelerator.unwrap_model(model), tokenizer, metrics, label_names, out_dir, log)
        except (ExportError, PushError) as e:  # the previous export, if any, is untouched
            logger.error(str(e))
            status = 1
    accelerator.wait_for_everyone()
    accelerator.end_training()  # last: in a multi-process run it tears down the process group
    return status


def training_window_length(windows: WindowSettings, tokenizer) -> int:
    """The longest input the model was trained on: packed sentences and their context plus the special
    tokens, or max_length without packing."""
    if not windows.pack_length:
        return windows.max_length
    prefix, suffix = special_token_layout(tokenizer)
    return min(windows.max_length, windows.pack_length + 2 * windows.context_size + len(prefix) + len(suffix))


def pipeline_figures(model, tokenizer, raw, splits, d, accelerator) -> dict:
    """metrics.json's ``pipeline``: {"sentence"|"document": {split: precision, recall, f1}} and how it ran."""
    from transformers import pipeline

    from nerforge.pipeline_scores import DOCUMENT_STRIDE, pipeline_scores

    stride = min(DOCUMENT_STRIDE, tokenizer.model_max_length // 4)
    model.eval()
    ner = pipeline(
        "ner",
        model=model,
        tokenizer=tokenizer,
        aggregation_strategy=RECOMMENDED_AGGREGATION,
        stride=stride,
        device=accelerator.device,
    )
    out = {"aggregation_strategy": RECOMMENDED_AGGREGATION, "stride": stride, "sentence": {}, "document": {}}
    for split in splits:
        ds = raw[split]
        names = ds.features["ner_tags"].feature.names
        docs = ds["document_id"] if "document_id" in ds.column_names else None
        gold = [[names[t] for t in tags] for tags in ds["ner_tags"]]
        got = pipeline_scores(ner, [list(s) for s in ds["tokens"]], gold, docs)
        for mode in ("sentence", "document"):
            out[mode][split] = got[mode]
    return out


def publish(cfg: RunConfig, model, tokenizer, metrics: dict, label_names, out_dir: Path, log) -> None:
    """metrics.json, the export folder, the optional push and the example sentence."""
    t = cfg.training
    try:
        write_json_atomic(out_dir / "metrics.json", metrics)
    except OSError as e:
        raise ExportError(f"could not write {out_dir / 'metrics.json'}: {e}") from e
    export_dir = export_run(model, tokenizer, cfg, metrics, label_names, out_dir / "model")
    log(f"exported to {export_dir}")
    if t.push_to_hub:
        url = push_export(
            export_dir,
            t.hub_model_id,
            private=t.hub_private,
            revision=t.hub_revision,
            commit_message=t.hub_commit_message,
        )
        log(f"pushed to {url}")
    if t.example_text:
        from transformers import pipeline

        ner = pipeline("ner", model=str(export_dir), aggregation_strategy=RECOMMENDED_AGGREGATION)
        log(f"pipeline('ner') on {t.example_text!r}:")
        for ent in ner(t.example_text):
            log(f"  {ent['entity_group']:5s} {ent['word']!r} [{ent['start']}:{ent['end']}] score {ent['score']:.3f}")
