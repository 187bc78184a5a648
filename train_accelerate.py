"""Fine-tune a transformer encoder for named entity recognition with 🤗 Accelerate.

    accelerate launch train_accelerate.py --config configs/bert-large-cased.yaml [--learning_rate 3e-5 ...]

One loop, read top to bottom: config -> data -> model -> features -> loop (accumulate, evaluate,
checkpoint) -> best model on validation and test -> export (+ card, + push). Processes, precision and
nodes come from accelerate's own config; everything else from ours (nerforge/config.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from nerforge import export, saving
from nerforge.config import ConfigError, RunConfig, parse_config
from nerforge.features import LengthGroupedBatchSampler, assemble_predictions, build_features, collate, pad_multiple
from nerforge.metric import score
from nerforge.modeling import build_optimizers, build_tiny_bert, clip_grad_norm, load_model_and_tokenizer

STATE_FILE = "trainer_state.json"


def fault_point(name: str, step: int) -> None:
    """Fault injection for the reliability tests: NERFORGE_KILL_AT=save:8 kills this process with
    SIGKILL halfway through writing the step-8 checkpoint (points: step, save, eval)."""
    if os.environ.get("NERFORGE_KILL_AT") == f"{name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def load_splits(cfg: RunConfig):
    """Raw CoNLL files through our builder, or a prepared dataset (build folder or Hub id)."""
    d = cfg.data
    if d.dataset_path:
        from datasets import load_dataset

        return load_dataset(d.dataset_path, cache_dir=d.cache_dir)
    from conll2003_loader import load_conll

    options = {"tagging_scheme": d.tagging_scheme}
    if d.columns:
        options["columns"] = tuple(d.columns)
    if d.label_names:
        options["label_names"] = list(d.label_names)
    return load_conll(data_dir=d.data_dir, cache_dir=d.cache_dir, **options)


def find_checkpoint(ckpt_dir: Path, spec: str) -> Path | None:
    """The checkpoint to resume from; None for 'latest' when the run died before its first one."""
    if spec != "latest":
        path = Path(spec)
        if not (path / STATE_FILE).is_file():
            raise ConfigError(f"{path}: not a complete checkpoint (no {STATE_FILE})")
        return path
    # Only fully written checkpoints have their final name (they are renamed from a temporary one).
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


@torch.no_grad()
def evaluate(model, loader, split, label_names, accelerator, step: int = -1) -> dict:
    """Predict every word of `split` once (windows are scattered back to words) and score it."""
    model.eval()
    preds, words, examples, losses = [], [], [], []
    for batch in loader:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        fault_point("eval", step)
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


def main(argv: list[str] | None = None) -> int:
    # ------------------------------------------------------------------ config and accelerator
    try:
        cfg = parse_config(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t, d = cfg.training, cfg.data
    out_dir = Path(t.output_dir)
    trackers = [] if t.report_to == "none" else t.report_to.split(",")
    # Under torchrun on a machine without GPUs, accelerate needs to be told to use CPU processes (gloo);
    # otherwise each process would believe it runs alone.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        log_with=trackers or None,
        cpu=world_size > 1 and not torch.cuda.is_available(),
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
    )
    if accelerator.num_processes != world_size:
        print(
            f"error: launched as {world_size} processes but accelerate sees {accelerator.num_processes}; "
            f"on CPU set ACCELERATE_USE_CPU=1",
            file=sys.stderr,
        )
        return 2
    # Sparse embedding updates: one process (no sparse all-reduce) and no fp16 loss scaling (accelerate
    # updates the scale after each optimizer's step: with two optimizers the second one's gradients
    # would be unscaled twice).
    if t.sparse_embedding_updates and (accelerator.num_processes > 1 or accelerator.mixed_precision == "fp16"):
        print(
            "error: sparse_embedding_updates is implemented for a single process without fp16 only; set it "
            f"to false for this run ({accelerator.num_processes} process(es), precision "
            f"{accelerator.mixed_precision})",
            file=sys.stderr,
        )
        return 2
    main_proc = accelerator.is_main_process
    log = accelerator.print
    set_seed(t.seed)

    # A finished or running experiment is never overwritten by accident.
    if t.resume_from_checkpoint is None and out_dir.exists() and any(out_dir.iterdir()):
        if not t.overwrite_output_dir:
            log(
                f"error: {out_dir} already holds a run; pass --overwrite_output_dir to replace it "
                f"or --resume_from_checkpoint latest to continue it",
                file=sys.stderr,
            )
            return 2
        if main_proc:
            shutil.rmtree(out_dir)
    accelerator.wait_for_everyone()
    ckpt_dir = out_dir / "checkpoints"
    if main_proc:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ data, model, features
    try:
        with accelerator.main_process_first():
            raw = load_splits(cfg)
    except (ValueError, OSError) as e:  # ConllFormatError is a ValueError naming file and line
        log(f"error: {e}", file=sys.stderr)
        return 2
    label_names = raw["train"].features["ner_tags"].feature.names
    model_path = cfg.model.model_name_or_path
    if cfg.model.tiny_model:
        model_path = str(out_dir / "tiny_model_init")
        with accelerator.main_process_first():
            if main_proc and not Path(model_path, "config.json").exists():
                words = (w for split in raw.values() for sent in split["tokens"] for w in sent)
                build_tiny_bert(words, label_names, model_path, seed=t.seed)
    model, tokenizer = load_model_and_tokenizer(
        model_path, label_names, cfg.model.revision, cfg.model.trust_remote_code
    )
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and d.max_length > max_positions:
        log(f"error: max_length {d.max_length} exceeds {model_path}'s {max_positions} positions", file=sys.stderr)
        return 2
    with accelerator.main_process_first():
        feats = {
            name: build_features(
                split,
                tokenizer,
                max_length=d.max_length,
                stride=d.stride,
                label_all_tokens=d.label_all_tokens,
                context_size=d.context_size,
                pack_length=d.pack_length,
                label_names=label_names,
                num_proc=d.preprocessing_num_workers,
            )
            for name, split in raw.items()
        }

    pad = partial(collate, pad_id=tokenizer.pad_token_id, multiple_of=pad_multiple(accelerator.device.type))
    sampler = LengthGroupedBatchSampler(feats["train"]["length"], t.per_device_train_batch_size, seed=t.seed)
    # Each loader has its own generator: starting an iterator then draws no number from the global
    # RNG, whose stream (dropout) must be the same in a resumed run as in an uninterrupted one.
    train_dl = DataLoader(
        feats["train"],
        batch_sampler=sampler,
        collate_fn=pad,
        num_workers=t.dataloader_num_workers,
        generator=torch.Generator().manual_seed(t.seed),
    )

    def eval_loader(split):  # sorted by length: little padding; order does not matter to the score
        return DataLoader(
            feats[split].sort("length"),
            batch_size=t.per_device_eval_batch_size,
            collate_fn=pad,
            generator=torch.Generator().manual_seed(t.seed),
        )

    eval_dls = {split: eval_loader(split) for split in ("validation", "test") if split in feats}

    # ------------------------------------------------------------------ optimizer and schedule
    optimizers = build_optimizers(model, t.learning_rate, t.weight_decay, t.sparse_embedding_updates)
    n = len(optimizers)
    model, *prepared = accelerator.prepare(model, *optimizers, train_dl, *eval_dls.values())
    optimizers, train_dl, eval_dls = prepared[:n], prepared[n], dict(zip(eval_dls, prepared[n + 1 :]))
    steps_per_epoch = math.ceil(len(train_dl) / t.gradient_accumulation_steps)
    # max_steps 0: no training; the model as loaded is evaluated and exported.
    max_steps = t.max_steps if t.max_steps >= 0 else math.ceil(t.num_train_epochs * steps_per_epoch)
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    # The schedulers (one per optimizer, in step) are stepped by us once per optimizer step and not
    # prepared (a prepared scheduler steps once per process). Their small state goes into
    # trainer_state.json rather than through register_for_checkpointing, which accelerate reloads
    # with an unrestricted pickle.
    schedulers = [
        get_scheduler(
            t.lr_scheduler_type, o, num_warmup_steps=math.ceil(t.warmup_ratio * max_steps), num_training_steps=max_steps
        )
        for o in optimizers
    ]
    eval_every = t.eval_steps or steps_per_epoch
    save_every = t.save_steps or steps_per_epoch

    # ------------------------------------------------------------------ resume
    state = {"global_step": 0, "best_f1": -1.0, "best_step": None, "bad_evals": 0, "history": []}
    if t.resume_from_checkpoint:
        try:
            ckpt = find_checkpoint(ckpt_dir, t.resume_from_checkpoint)
        except ConfigError as e:
            log(f"error: {e}", file=sys.stderr)
            return 2
        if ckpt is None:
            log(f"no complete checkpoint in {ckpt_dir} yet: starting from step 0")
        else:
            accelerator.load_state(str(ckpt))  # weights, optimizer, RNG states of every process
            state = json.loads((ckpt / STATE_FILE).read_text())
            saved = state.pop("scheduler")
            for sch, sd in zip(schedulers, saved if isinstance(saved, list) else [saved], strict=True):
                sch.load_state_dict(sd)
            log(f"resumed from {ckpt} at step {state['global_step']}")
    start_epoch, done_in_epoch = divmod(state["global_step"], steps_per_epoch)

    # ------------------------------------------------------------------ startup summary
    n_proc = accelerator.num_processes
    effective = t.per_device_train_batch_size * n_proc * t.gradient_accumulation_steps
    log(
        f"***** training {model_path} on {accelerator.device} ({n_proc} process(es), precision {accelerator.mixed_precision}) *****\n"
        f"  sentences train/validation/test: {' / '.join(str(len(s)) for s in raw.values())}; "
        f"training windows: {len(feats['train'])}; labels: {len(label_names)} ({d.tagging_scheme})\n"
        f"  epochs: {num_epochs}; batch per device: {t.per_device_train_batch_size}; effective batch "
        f"(per device x processes x accumulation): {effective}\n"
        f"  optimizer steps: {max_steps} ({steps_per_epoch} per epoch); warmup: {math.ceil(t.warmup_ratio * max_steps)}"
    )
    accelerator.init_trackers(
        "nerforge",
        config={
            f"{s}.{k}": v if isinstance(v, (int, float, str, bool)) else str(v)
            for s, sec in cfg.to_dict().items()
            for k, v in sec.items()
        },
    )
    best_dir = out_dir / "best_model"

    def save_checkpoint():
        # Written under a temporary name and renamed when complete: a run killed mid-save never
        # leaves a half-written folder that looks like a checkpoint.
        final = ckpt_dir / f"step-{state['global_step']:06d}"
        tmp = ckpt_dir / f".tmp-step-{state['global_step']:06d}"
        if main_proc and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        fault_point("save", state["global_step"])
        if main_proc:
            export.write_json_atomic(tmp / STATE_FILE, {**state, "scheduler": [s.state_dict() for s in schedulers]})
            cfg.save(tmp / "training_config.yaml")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            kept = sorted(ckpt_dir.glob("step-*"))
            for old in kept[: max(0, len(kept) - max(1, t.save_total_limit))]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()

    def run_eval() -> bool:
        """Evaluate on validation, keep the best model; True when early stopping says stop."""
        res = evaluate(model, eval_dls["validation"], raw["validation"], label_names, accelerator, state["global_step"])
        entry = {
            "step": state["global_step"],
            "epoch": round(state["global_step"] / steps_per_epoch, 3),
            "eval_f1": res["f1"],
            "eval_loss": res["loss"],
        }
        state["history"].append(entry)
        accelerator.log(
            {
                "eval/f1": res["f1"],
                "eval/loss": res["loss"],
                "eval/precision": res["precision"],
                "eval/recall": res["recall"],
            },
            step=state["global_step"],
        )
        log(f"step {state['global_step']}: validation F1 {100 * res['f1']:.2f} (loss {res['loss']:.4f})")
        if res["f1"] > state["best_f1"]:
            state.update(best_f1=res["f1"], best_step=state["global_step"], bad_evals=0)
            saving.save_model_atomic(accelerator.unwrap_model(model), best_dir, main_proc, accelerator)
        else:
            state["bad_evals"] += 1
        return bool(t.early_stopping_patience) and state["bad_evals"] >= t.early_stopping_patience

    # ------------------------------------------------------------------ training loop
    model.train()
    progress = tqdm(
        total=max_steps, initial=state["global_step"], disable=not accelerator.is_local_main_process, desc="training"
    )
    running_loss, running_n, stop, t0 = torch.zeros((), device=accelerator.device), 0, False, time.time()
    # Throughput of this process's training steps alone (evaluation and checkpoints excluded).
    # Word pieces are summed on the device: converting every step would force a GPU sync per step.
    seen = {"windows": 0, "pieces": torch.zeros((), dtype=torch.long, device=accelerator.device), "pause_s": 0.0}
    for epoch in range(start_epoch, num_epochs if state["global_step"] < max_steps else start_epoch):
        sampler.set_epoch(epoch)  # batch order is a function of (seed, epoch): every process agrees
        loader = train_dl
        if epoch == start_epoch and done_in_epoch:
            loader = accelerator.skip_first_batches(train_dl, done_in_epoch * t.gradient_accumulation_steps)
        for batch in loader:
            with accelerator.accumulate(model):
                out = model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
                )
                accelerator.backward(out.loss)
                fault_point("step", state["global_step"] + 1)
                if accelerator.sync_gradients:
                    if t.sparse_embedding_updates:
                        clip_grad_norm(model.parameters(), t.max_grad_norm)  # takes the sparse gradient too
                    else:
                        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                for o in optimizers:
                    o.step()
                    o.zero_grad()
            running_loss += out.loss.detach()
            running_n += 1
            seen["windows"] += batch["input_ids"].shape[0]
            seen["pieces"] += batch["attention_mask"].sum()
            if not accelerator.sync_gradients:
                continue
            for sch in schedulers:
                sch.step()
            state["global_step"] += 1
            step = state["global_step"]
            progress.update(1)
            if step % t.logging_steps == 0 or step == max_steps:
                loss = accelerator.reduce(running_loss / running_n, "mean").item()
                lr = schedulers[0].get_last_lr()[0]
                state["history"].append(
                    {"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": loss, "learning_rate": lr}
                )
                accelerator.log({"train/loss": loss, "train/learning_rate": lr}, step=step)
                progress.set_postfix(loss=f"{loss:.4f}")
                running_loss.zero_()
                running_n = 0
            pause = time.time()
            if step % eval_every == 0 or step == max_steps:
                stop = run_eval()
            if step % save_every == 0 or step == max_steps or stop:
                save_checkpoint()
            seen["pause_s"] += time.time() - pause
            if stop or step >= max_steps:
                break
        if stop or state["global_step"] >= max_steps:
            break
    progress.close()
    train_runtime = time.time() - t0
    step_time = max(train_runtime - seen["pause_s"], 1e-9)
    throughput = {
        "train_windows_per_s": round(seen["windows"] * n_proc / step_time, 2),
        "train_pieces_per_s": round(int(seen["pieces"]) * n_proc / step_time, 1),
        "train_step_time_s": round(step_time, 2),
    }

    # ------------------------------------------------------------------ final evaluation of the best model
    accelerator.wait_for_everyone()
    if state["best_step"] is None:  # no evaluation happened (e.g. a resumed run that had finished)
        run_eval()
    accelerator.unwrap_model(model).load_state_dict(saving.load_weights(best_dir), strict=True)
    metrics = {split: evaluate(model, dl, raw[split], label_names, accelerator) for split, dl in eval_dls.items()}
    metrics.update(
        best_step=state["best_step"],
        history=state["history"],
        num_processes=n_proc,
        effective_batch_size=effective,
        train_runtime_s=round(train_runtime, 2),
        **throughput,
        mixed_precision=accelerator.mixed_precision,
    )
    for split in eval_dls:
        log(
            f"{split}: precision {100 * metrics[split]['precision']:.2f} recall {100 * metrics[split]['recall']:.2f} "
            f"F1 {100 * metrics[split]['f1']:.2f} (entity-level micro, conlleval); "
            f"seqeval weighted F1 {100 * metrics[split]['weighted_f1']:.2f}"
        )

    # ------------------------------------------------------------------ export, card, push (main process)
    status = (
        publish(cfg, accelerator.unwrap_model(model), tokenizer, metrics, label_names, out_dir, log) if main_proc else 0
    )
    accelerator.wait_for_everyone()
    accelerator.end_training()  # last: in a multi-process run it tears down the process group
    return status


def publish(cfg: RunConfig, model, tokenizer, metrics: dict, label_names, out_dir: Path, log) -> int:
    """metrics.json, the export folder, the optional push and the example; 0, or the exit status of a failure."""
    t = cfg.training
    try:
        export.write_json_atomic(out_dir / "metrics.json", metrics)
        export_dir = saving.export_run(model, tokenizer, cfg, metrics, label_names, out_dir / "model")
    except OSError as e:  # full or unwritable disk: the previous export, if any, is untouched
        log(f"error: {e}", file=sys.stderr)
        return 1
    log(f"exported to {export_dir}")
    if t.push_to_hub:
        try:
            url = export.push_export(
                export_dir,
                t.hub_model_id,
                private=t.hub_private,
                revision=t.hub_revision,
                commit_message=t.hub_commit_message,
            )
            log(f"pushed to {url}")
        except export.PushError as e:
            log(f"error: {e}", file=sys.stderr)
            return 1
    if t.example_text:
        from transformers import pipeline

        ner = pipeline("ner", model=str(export_dir), aggregation_strategy="simple")
        log(f"pipeline('ner') on {t.example_text!r}:")
        for ent in ner(t.example_text):
            log(f"  {ent['entity_group']:5s} {ent['word']!r} [{ent['start']}:{ent['end']}] score {ent['score']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
