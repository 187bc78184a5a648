"""The run configuration: three typed sections read from YAML, overridable on the command line.

    model:    {model_name_or_path: bert-large-cased}
    data:     {data_dir: data/conll2003, max_length: 512}
    training: {learning_rate: 1.0e-4, num_train_epochs: 3}

`--learning-rate 3e-5` on the command line overrides the YAML (field names are unique across
sections; the command line is parsed by ``nerforge.cli.train``). Unknown sections or keys and values of
the wrong type are errors. Launcher settings (processes, precision, nodes) are accelerate's, not ours:
`accelerate config` / `accelerate launch`.

A config is a YAML path or the name of a bundled one (:func:`config_path`: ``quickstart``,
``minilm-cpu``, ``bert-base-cased``, ``bert-large-cased``), and ``data_dir: bundled:sample`` names the
made-up sample corpus shipped with the package, so both work from any folder after ``pip install``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import yaml


class ConfigError(ValueError):
    pass


PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_CONFIGS = PACKAGE_DIR / "configs"  # the checkout's configs/ (a link in the source tree, files in a wheel)
BUNDLED_DATA = {"bundled:sample": PACKAGE_DIR / "sample_data"}


def bundled_config_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED_CONFIGS.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A config file: the path as given when it exists, else the bundled config of that name
    (``quickstart``, ``bert-large-cased.yaml``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = BUNDLED_CONFIGS / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent == Path(".") and bundled.is_file():
        return bundled
    names = ", ".join(bundled_config_names())
    raise ConfigError(f"{name_or_path}: no such config file, and no bundled config of that name (bundled: {names})")


def data_path(value: str | None) -> str | None:
    """A data folder setting with ``bundled:sample`` resolved to the package's sample corpus."""
    if value is None or not value.startswith("bundled:"):
        return value
    if value not in BUNDLED_DATA:
        raise ConfigError(f"data_dir: unknown bundled data {value!r} (known: {', '.join(BUNDLED_DATA)})")
    return str(BUNDLED_DATA[value])


@dataclass
class ModelConfig:
    model_name_or_path: str = field(
        default="bert-large-cased", metadata={"help": "Hub id or local folder of the encoder."}
    )
    revision: Optional[str] = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of the encoder."}
    )
    tiny_model: bool = field(
        default=False,
        metadata={
            "help": "Ignore model_name_or_path: build a 2-layer BERT from scratch with a vocabulary made from the training words (offline demo and tests)."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the Hub to run. Off by default."}
    )
    keep_words_whole: bool = field(
        default=False,
        metadata={
            "help": "WordPiece (BERT-style) tokenizers only: keep punctuation inside a word (AL-AIN, U.S) in the word as ## pieces instead of cutting the word there, so that pipeline('ner', aggregation_strategy='first') groups pieces into the same words as the data and our scores. The export's tokenizer keeps it."
        },
    )
    attention_dropout: Optional[float] = field(
        default=None,
        metadata={
            "help": "Dropout on the attention probabilities while fine-tuning (None: the encoder's own, 0.1 for BERT and MiniLM). 0 lets PyTorch's fused attention kernel run in training too, instead of a full attention matrix and its dropout mask: on a 2-core CPU the MiniLM recipe's loop ran 1.16-1.32x as fast in fp32 and 1.62x the fp32 recipe in bf16 (BENCHMARKS.md, 'bf16 and int8 on the CPU'), at validation F1 equal within seed noise on CoNLL-2003 and WNUT-17 (3 seeds, 1 epoch). No bundled config sets it yet: the recipe's export was trained with the encoder's 0.1."
        },
    )
    license: str = field(
        default="apache-2.0",
        metadata={"help": "License of the fine-tuned model, written to its card (usually the base model's)."},
    )


@dataclass
class DataConfig:
    data_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "Folder with raw CoNLL files (eng.train/eng.testa/eng.testb or train.txt/valid.txt/test.txt); bundled:sample is the made-up sample corpus shipped with nerforge. None: download the raw release."
        },
    )
    dataset_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "A prepared dataset instead of raw files: the folder written by `python -m conll2003_loader build`, or a Hub dataset id."
        },
    )
    train_file: Optional[str] = field(
        default=None,
        metadata={
            "help": "Training file: a name in data_dir or a path. With any of train_file/validation_file/test_file, exactly the splits given are read (e.g. wnut17train.conll)."
        },
    )
    validation_file: Optional[str] = field(
        default=None, metadata={"help": "Validation file: a name in data_dir or a path (e.g. emerging.dev.conll)."}
    )
    test_file: Optional[str] = field(
        default=None, metadata={"help": "Test file: a name in data_dir or a path (e.g. emerging.test.annotated)."}
    )
    dataset_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Name given to the data in the model card (default: the name of the data folder or prepared "
            "dataset; conll2003 when the raw release is downloaded)."
        },
    )
    tagging_scheme: Literal["iob2", "iob1"] = field(
        default="iob2", metadata={"help": "Tags to train on: iob2 (converted, default) or the raw files' iob1."}
    )
    columns: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Column layout of the raw files, e.g. tokens ner_tags. Default: CoNLL-2003's four columns."},
    )
    label_names: Optional[list[str]] = field(
        default=None, metadata={"help": "Tag set for corpora other than CoNLL-2003 (default: inferred from train)."}
    )
    max_length: int = field(
        default=512,
        metadata={
            "help": "Longest model input in word pieces, special tokens included. Longer sentences are windowed, never truncated."
        },
    )
    stride: int = field(
        default=32, metadata={"help": "Word pieces of context kept on each side of a window when a sentence is cut."}
    )
    context_size: int = field(
        default=0, metadata={"help": "Word pieces of document context on each side of a sentence (0: none)."}
    )
    pack_length: int = field(
        default=0,
        metadata={
            "help": "Label consecutive sentences of a document together in one window, up to this many word pieces (0: one sentence per window). With context_size, the context is then paid once per group instead of once per sentence; pack_length + 2 x context_size must fit in max_length."
        },
    )
    sentence_alone_fraction: float = field(
        default=0.0,
        metadata={
            "help": "With context_size or pack_length: the share of training documents windowed one sentence at a time, without context (0-1), so that the model also does well where it gets no context, as in pipeline('ner')."
        },
    )
    label_all_tokens: bool = field(
        default=False,
        metadata={
            "help": "Train on every word piece (B- becomes I- on continuations), not only the first of each word."
        },
    )
    label_edge_punctuation: bool = field(
        default=False,
        metadata={
            "help": "Also train on punctuation the tokenizer splits off a word's edges ('B.' -> 'b', '.'), with the word's label (B- becomes I-): pipeline('ner') takes it as a word of its own, and untrained it can cut an entity such as 'B. Smith' in two. WordPiece tokenizers only."
        },
    )
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for Dataset.map."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "datasets cache folder."})

    def loader_kwargs(self) -> dict:
        """Where the splits come from, as arguments of ``conll2003_loader.load_splits``."""
        keys = ("data_dir", "dataset_path", "cache_dir", "tagging_scheme", "columns", "label_names")
        keys += ("train_file", "validation_file", "test_file")
        kwargs = {k: getattr(self, k) for k in keys}
        kwargs["data_dir"] = data_path(self.data_dir)
        return kwargs


@dataclass
class TrainingConfig:
    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints, metrics and the export go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start afresh in an output_dir that already holds a run."}
    )
    per_device_train_batch_size: int = field(
        default=16,
        metadata={
            "help": "Training windows per device per micro-step; the effective batch is this x processes x gradient_accumulation_steps."
        },
    )
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Windows per forward pass in evaluation and prediction."}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-steps whose gradients are summed before one optimizer step."}
    )
    learning_rate: float = field(
        default=3e-5,
        metadata={"help": "Peak learning rate of AdamW (after warmup); 2e-5 to 5e-5 is the usual BERT fine-tune."},
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and layer norms)."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Share of the optimizer steps spent warming the learning rate up from 0."}
    )
    lr_scheduler_type: Literal["linear", "cosine", "constant_with_warmup"] = field(
        default="linear", metadata={"help": "Learning-rate schedule after warmup."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradients are clipped to this global norm."})
    sparse_embedding_updates: bool = field(
        default=False,
        metadata={
            "help": "Word embeddings get sparse gradients and SparseAdam (lazy Adam, no weight decay on them): a step updates only the rows its batch used. Faster on CPU; one process, no fp16."
        },
    )
    tf32: bool = field(
        default=False,
        metadata={
            "help": "On NVIDIA GPUs from Ampere on, run fp32 matrix products and convolutions in TF32 "
            "(torch.backends.*.allow_tf32): faster, 10-bit mantissa. No effect on CPU or under bf16 autocast's "
            "bf16 products."
        },
    )
    attention_precision: Literal["auto", "fp32", "mixed"] = field(
        default="auto",
        metadata={
            "help": "Under bf16/fp16 mixed precision, the precision of the attention itself (softmax(QK^T)V; "
            "the model's linear layers stay in the mixed precision). fp32: computed in fp32; mixed: in the "
            "mixed precision; auto: fp32 on a CPU when the attention dropout is 0 (then PyTorch's fused CPU "
            "attention runs in training, and its backward ran about 2x slower in bf16 than in fp32 on an AMX "
            "CPU; BENCHMARKS.md, 'bf16 and int8 on the CPU'), mixed otherwise and on GPUs. Models on "
            "transformers' SDPA attention only; training only (exports are unchanged)."
        },
    )
    dropout_masks: Literal["auto", "torch", "fast"] = field(
        default="torch",
        metadata={
            "help": "How dropout draws its masks in training. torch: torch's dropout (one Bernoulli draw per "
            "element, serial on a CPU). fast: four 16-bit uniform integers from each 64-bit draw of the same "
            "seeded generator, against a threshold (the drop probability rounded to 1/65536), and for models on "
            "transformers' SDPA attention an attention that drops from its probabilities the same way "
            "(nerforge.dropout). auto: fast on a CPU, torch on GPUs. Training only; exports are unchanged. Not the "
            "default: validation F1 within seed noise on CoNLL-2003 and WNUT-17 (3 seeds each) but lower on 5 of the 6 "
            "paired seeds (BENCHMARKS.md, 'Training, 2026-12-03 (later)')."
        },
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training windows."})
    max_steps: int = field(
        default=-1,
        metadata={
            "help": "Stop after this many optimizer steps (overrides num_train_epochs when >= 0; 0 evaluates and exports the model as loaded)."
        },
    )
    seed: int = field(
        default=42,
        metadata={"help": "Seed of the new classification head, dropout, the batch order and the tiny model."},
    )
    eval_steps: float = field(
        default=0,
        metadata={
            "help": "Evaluate every N optimizer steps; a value below 1 is that fraction of the run (0.2: 5 times, "
            "whatever the number of processes); 0: at the end of every epoch."
        },
    )
    save_steps: float = field(
        default=0,
        metadata={
            "help": "Checkpoint every N optimizer steps; a value below 1 is that fraction of the run; 0: at the "
            "end of every epoch."
        },
    )
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest removed first)."})
    logging_steps: float = field(
        default=50,
        metadata={
            "help": "Log the training loss every N optimizer steps; a value below 1 is that fraction of the run."
        },
    )
    early_stopping_patience: int = field(
        default=0, metadata={"help": "Stop after N evaluations without a better validation F1 (0: never)."}
    )
    resume_from_checkpoint: Optional[str] = field(
        default=None,
        metadata={
            "help": "'latest' (the newest checkpoint whose files match its manifest; damaged ones are skipped "
            "with a warning) or a checkpoint folder (it must verify)."
        },
    )
    report_to: str = field(
        default="tensorboard", metadata={"help": "accelerate tracker(s), comma-separated, or 'none'."}
    )
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Worker processes of the training DataLoader (0: in the main process)."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the export to the Hub at the end (needs hub_model_id)."}
    )
    hub_model_id: Optional[str] = field(
        default=None, metadata={"help": "Hub repository to push to, e.g. your-name/bert-large-cased-conll2003."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})
    hub_revision: Optional[str] = field(
        default=None, metadata={"help": "Hub branch to push to (created if missing; default: main)."}
    )
    hub_commit_message: str = field(
        default="Upload NER model trained with nerforge", metadata={"help": "Commit message of the push."}
    )
    calibrate: bool = field(
        default=True,
        metadata={
            "help": "At the end, fit one temperature on the validation words (NLL) and fold it into the classifier: calibrated scores for every consumer, tags and F1 unchanged."
        },
    )
    evaluate_pipeline: bool = field(
        default=True,
        metadata={
            "help": "At the end, score the model through transformers' pipeline('ner') fed one sentence and one "
            "document per call: what users of the export get (metrics.json pipeline; the card's first table)."
        },
    )
    example_text: Optional[str] = field(
        default=None, metadata={"help": "A sentence to tag with pipeline('ner') at the end of the run."}
    )
    export_onnx: bool = field(
        default=False,
        metadata={
            "help": "Also write onnx/model.onnx into the export (ONNX Runtime, transformers.js), verified against the model; needs the onnx extra (pip install 'nerforge[onnx]')."
        },
    )
    export_onnx_int8: bool = field(
        default=True,
        metadata={
            "help": "With export_onnx, also write onnx/model_quantized.onnx (dynamic int8 weights), its tags verified against fp32."
        },
    )


SECTIONS = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig}


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig
    training: TrainingConfig

    def sections(self) -> list[tuple[str, object]]:
        """[(section name, section dataclass)], in file order."""
        return [(name, getattr(self, name)) for name in SECTIONS]

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(section) for name, section in self.sections()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _check_value(name: str, value, tp):
    """Return `value` converted to `tp` where that is lossless (YAML reads 1e-4 as a string), or raise."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_value(name, value, args[0])
    if value is None:
        raise ConfigError(f"{name}: expected {getattr(tp, '__name__', tp)}, got null")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{name}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_check_value(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {tp}")


def validate(cfg: RunConfig) -> RunConfig:
    for section, cls in SECTIONS.items():
        obj = getattr(cfg, section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            setattr(obj, f.name, _check_value(f"{section}.{f.name}", getattr(obj, f.name), hints[f.name]))
    d, t = cfg.data, cfg.training
    if d.dataset_path and (d.data_dir or d.train_file or d.validation_file or d.test_file):
        raise ConfigError("data.dataset_path is a prepared dataset: give it or raw files (data_dir, *_file), not both")
    if d.max_length < 8:
        raise ConfigError(f"data.max_length: expected at least 8, got {d.max_length}")
    if d.stride < 0 or d.context_size < 0 or d.pack_length < 0:
        raise ConfigError("data.stride, data.context_size and data.pack_length must be >= 0")
    if d.pack_length and d.pack_length + 2 * d.context_size + 2 > d.max_length:
        raise ConfigError(
            f"data.pack_length {d.pack_length} + 2 x data.context_size {d.context_size} + 2 special "
            f"tokens exceeds data.max_length {d.max_length}"
        )
    if not 0 <= d.sentence_alone_fraction <= 1:
        raise ConfigError(f"data.sentence_alone_fraction: expected a value in [0, 1], got {d.sentence_alone_fraction}")
    if d.sentence_alone_fraction and not (d.context_size or d.pack_length):
        raise ConfigError(
            "data.sentence_alone_fraction needs data.context_size or data.pack_length (without them every sentence is alone)"
        )
    if t.gradient_accumulation_steps < 1 or t.per_device_train_batch_size < 1 or t.per_device_eval_batch_size < 1:
        raise ConfigError("batch sizes and gradient_accumulation_steps must be >= 1")
    for name in ("eval_steps", "save_steps", "logging_steps"):
        value = getattr(t, name)
        if value < 0 or (value >= 1 and value != int(value)):
            raise ConfigError(
                f"training.{name}: expected a whole number of steps or a fraction of the run below 1, got {value}"
            )
    if not t.logging_steps:
        raise ConfigError("training.logging_steps: expected a number of steps or a fraction above 0, got 0")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"training.warmup_ratio: expected a value in [0, 1), got {t.warmup_ratio}")
    if t.push_to_hub and not t.hub_model_id:
        raise ConfigError(
            "training.push_to_hub needs training.hub_model_id (e.g. your-name/bert-large-cased-conll2003)"
        )
    return cfg


def steps_between(value: float, max_steps: int, default: int) -> int:
    """Optimizer steps between two evaluations (checkpoints, log lines): ``value`` steps; a value below 1
    is that fraction of the run's ``max_steps`` (rounded up, at least 1); 0 is ``default``."""
    if not value:
        return max(1, default)
    if value < 1:
        return max(1, math.ceil(value * max_steps))
    return int(value)


def read_yaml(path: str | Path) -> dict:
    """YAML file (or bundled config name) -> {field: value}, checking sections and keys."""
    path = config_path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {list(SECTIONS)}")
    flat = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section '{section}' (expected {', '.join(SECTIONS)})")
        hints = typing.get_type_hints(SECTIONS[section])
        for key, value in (values or {}).items():
            if key not in hints:
                raise ConfigError(f"{path}: unknown key '{section}.{key}' (known: {', '.join(sorted(hints))})")
            try:
                flat[key] = _check_value(f"{section}.{key}", value, hints[key])
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    return flat


def load_saved(path: str | Path) -> RunConfig:
    """Read back a `training_config.yaml` saved with a checkpoint or export."""
    flat = read_yaml(path)
    sections = {
        name: cls(**{k: v for k, v in flat.items() if k in {f.name for f in dataclasses.fields(cls)}})
        for name, cls in SECTIONS.items()
    }
    return validate(RunConfig(**sections))
