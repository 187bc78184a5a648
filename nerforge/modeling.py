"""Model and tokenizer loading, and the tiny from-scratch BERT used offline (quick start, tests)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

# Model families whose tokenizers need a leading space to treat pre-split words as words.
PREFIX_SPACE_MODELS = {"roberta", "xlm-roberta", "longformer", "deberta", "deberta-v2", "bart", "gpt2", "modernbert"}


def build_tiny_bert(
    words: Iterable[str],
    label_names: Sequence[str],
    out_dir: str | Path,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
) -> Path:
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
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
    )
    with torch.random.fork_rng():  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = BertForTokenClassification(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def load_model_and_tokenizer(
    name_or_path: str,
    label_names: Sequence[str] | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
):
    """A token-classification model and its fast tokenizer, for training and for prediction alike.

    With ``label_names`` (training) the head's labels are the dataset's names, and a checkpoint
    fine-tuned on another tag set gets a fresh head; without (prediction) the model keeps its own."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    labels = {}
    if label_names is not None:
        labels = {
            "num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {n: i for i, n in enumerate(label_names)},
        }
    config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code, **labels)
    extra = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE_MODELS else {}
    tokenizer = AutoTokenizer.from_pretrained(
        name_or_path, revision=revision, use_fast=True, trust_remote_code=trust_remote_code, **extra
    )
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: no fast tokenizer; word_ids() alignment needs one")
    # Attention: transformers' default, PyTorch SDPA for BERT and most encoders (eager where a model has
    # none); naming attn_implementation="sdpa" here would refuse the models without it.
    model = AutoModelForTokenClassification.from_pretrained(
        name_or_path,
        config=config,
        revision=revision,
        trust_remote_code=trust_remote_code,
        ignore_mismatched_sizes=label_names is not None,
    )
    return model, tokenizer


def position_limit(config) -> int | None:
    """Longest input (in word pieces, special tokens included) that a model's position embeddings
    allow; None when no such limit is known."""
    pos = getattr(config, "max_position_embeddings", None)
    if not isinstance(pos, int) or pos <= 0:
        return None
    # RoBERTa-style models reserve padding_idx + 1 positions (514 -> 512 usable).
    offset = (
        getattr(config, "pad_token_id", None)
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer")
        else None
    )
    return pos - (offset + 1 if isinstance(offset, int) else 0)


def param_groups(model, weight_decay: float, skip=()) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalisation weights; parameters in `skip` left out."""
    decay, no_decay = [], []
    skip_ids = {id(p) for p in skip}
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in skip_ids:
            continue
        lname = name.lower()
        (
            no_decay
            if name.endswith("bias") or "layernorm" in lname or "layer_norm" in lname or "norm." in lname
            else decay
        ).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizers(model, learning_rate: float, weight_decay: float, sparse_embeddings: bool = False) -> list:
    """AdamW (fused where the device allows it) over the model. With `sparse_embeddings`, the word
    embeddings get sparse gradients and a SparseAdam of their own: a step then touches only the rows its
    batch used (lazy Adam, no weight decay on those rows) instead of a dense 30k-row gradient, its
    clipping and its AdamW pass, the largest per-step costs besides the matrix products on a CPU."""
    import torch

    embedding = model.get_input_embeddings() if sparse_embeddings else None
    if embedding is not None:
        if not isinstance(embedding, torch.nn.Embedding):
            raise ValueError(
                f"sparse_embedding_updates: the input embeddings are a {type(embedding).__name__}, "
                "not a torch.nn.Embedding"
            )
        embedding.sparse = True
    groups = param_groups(model, weight_decay, skip=[embedding.weight] if embedding is not None else ())
    # fused=True on every device: torch checks the parameters' device at the first step, not here, so an
    # optimizer built while the model is still on the CPU (before accelerator.prepare moves it) runs the
    # CUDA kernel once the parameters are on a GPU, and the CPU kernel on a CPU (bench/gpu.py's
    # fused_adamw_check does exactly this). The fallback is for a torch that refuses fused=True here.
    try:
        optimizers = [torch.optim.AdamW(groups, lr=learning_rate, fused=True)]
    except (RuntimeError, TypeError):
        optimizers = [torch.optim.AdamW(groups, lr=learning_rate)]
    if embedding is not None:
        optimizers.append(torch.optim.SparseAdam([embedding.weight], lr=learning_rate))
    return optimizers


def clip_grad_norm(parameters, max_norm: float):
    """torch.nn.utils.clip_grad_norm_ for gradients that may be sparse: the total 2-norm over all of
    them, every gradient scaled by min(1, max_norm / norm). Sparse gradients are coalesced first (in
    place), so that a row used twice in a batch is summed before it is squared. Returns the norm."""
    import torch

    dense, sparse_values = [], []
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            sparse_values.append(p.grad._values())  # a view: scaling it scales the gradient
        else:
            dense.append(p.grad)
    grads = dense + sparse_values
    if not grads:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm(grads, 2.0)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, coef.to(grads[0].device))
    return total
