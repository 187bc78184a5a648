"""Model and tokenizer loading, and the tiny from-scratch BERT used offline (quick start, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

# Model families whose tokenizers need a leading space to treat pre-split words as words.
PREFIX_SPACE_MODELS = {"roberta", "xlm-roberta", "longformer", "deberta", "deberta-v2", "bart", "gpt2", "modernbert"}


def build_tiny_bert(words: Iterable[str], label_names: Sequence[str], out_dir: str | Path, seed: int = 0,
                    hidden_size: int = 64, num_layers: int = 2) -> Path:
    """Write a randomly initialised 2-layer BERT and a cased word-level vocabulary made from `words`
    (plus single characters, so unseen words still split into pieces) to `out_dir`."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    words = sorted(set(words))
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += chars + ["##" + c for c in chars] + [w for w in words if w not in set(chars)]
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(dict.fromkeys(vocab))}, do_lower_case=False)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=hidden_size * 2, max_position_embeddings=512,
        num_labels=len(label_names), id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
    )
    with torch.random.fork_rng():  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = BertForTokenClassification(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def load_model_and_tokenizer(name_or_path: str, label_names: Sequence[str], revision: str | None = None,
                             trust_remote_code: bool = False):
    """A fast tokenizer and a token-classification head whose labels are the dataset's names."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(
        name_or_path, revision=revision, trust_remote_code=trust_remote_code,
        num_labels=len(label_names), id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
    )
    extra = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE_MODELS else {}
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, use_fast=True,
                                              trust_remote_code=trust_remote_code, **extra)
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: no fast tokenizer; word_ids() alignment needs one")
    model = AutoModelForTokenClassification.from_pretrained(
        name_or_path, config=config, revision=revision, trust_remote_code=trust_remote_code,
        ignore_mismatched_sizes=True,  # a checkpoint fine-tuned on another tag set gets a fresh head
    )
    return model, tokenizer


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        (no_decay if name.endswith("bias") or "layernorm" in lname or "layer_norm" in lname or "norm." in lname
         else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
