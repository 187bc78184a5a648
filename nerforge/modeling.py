"""Model and tokenizer loading, and the tiny from-scratch BERT used offline (quick start, tests)."""

from __future__ import annotations

import functools
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
    whole_words: bool = False,
    attention_dropout: float | None = None,
):
    """A token-classification model and its fast tokenizer, for training and for prediction alike.

    With ``label_names`` (training) the head's labels are the dataset's names, and a checkpoint
    fine-tuned on another tag set gets a fresh head; without (prediction) the model keeps its own.
    ``whole_words``: the tokenizer keeps words whole (:func:`keep_words_whole`); ``attention_dropout``
    (not None): the dropout on attention probabilities, set in the config before the model is built."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    labels = {}
    if label_names is not None:
        labels = {
            "num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {n: i for i, n in enumerate(label_names)},
        }
    config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code, **labels)
    if attention_dropout is not None:
        set_attention_dropout(config, attention_dropout, name_or_path)
    extra = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE_MODELS else {}
    tokenizer = AutoTokenizer.from_pretrained(
        name_or_path, revision=revision, use_fast=True, trust_remote_code=trust_remote_code, **extra
    )
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: no fast tokenizer; word_ids() alignment needs one")
    if whole_words:
        tokenizer = keep_words_whole(tokenizer)
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


# The name transformers' AttentionInterface knows sdpa_in_fp32 by (registered by attention_in_fp32; never
# saved: transformers leaves the attention implementation out of config.json). The name needs SDPA's mask
# builder registered too: transformers gives an attention it has no mask builder for no mask at all, and
# the padding would be attended to.
FP32_ATTENTION = "nerforge_sdpa_fp32"


def in_fp32(attention):
    """``attention`` (transformers' attention-interface signature) computed in fp32 whatever autocast is on,
    its output cast back to the query's dtype."""

    def attention_fp32(module, query, key, value, attention_mask, **kwargs):
        import torch

        dtype = query.dtype
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        with torch.autocast(query.device.type, enabled=False):
            out, weights = attention(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
        return out.to(dtype), weights

    return attention_fp32


def sdpa_in_fp32(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention computed in fp32 (:func:`in_fp32`): under bf16 autocast on a CPU the
    linear layers keep bf16 and the attention gets PyTorch's fp32 fused kernel, whose backward is the
    faster one there."""
    return _sdpa_fp32()(module, query, key, value, attention_mask, **kwargs)


@functools.cache
def _sdpa_fp32():
    """transformers' SDPA attention wrapped by :func:`in_fp32`, built once (it runs in every layer, every step)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return in_fp32(sdpa_attention_forward)


def wants_fp32_attention(setting: str, mixed_precision: str, device_type: str, attention_dropout: float | None) -> bool:
    """Whether training_config.attention_precision ``setting`` asks for fp32 attention under accelerate's
    ``mixed_precision`` on ``device_type``: never in fp32 runs; 'auto' only on a CPU and only without
    attention dropout (``attention_dropout`` 0), where PyTorch's fused kernel runs in training and its fp32
    backward is the faster one; with dropout the math path runs, and there bf16 was as fast or faster."""
    if setting not in ("auto", "fp32", "mixed"):
        raise ValueError(f"attention_precision must be auto, fp32 or mixed, got {setting!r}")
    if mixed_precision not in ("bf16", "fp16") or setting == "mixed":
        return False
    return setting == "fp32" or (device_type == "cpu" and attention_dropout == 0)


def attention_dropout_of(config) -> float | None:
    """The attention-probability dropout a transformers config sets (None: it has none of the known fields)."""
    key = attention_dropout_field(config)
    return None if key is None else float(getattr(config, key))


def use_sdpa_attention(model, name: str, attention) -> bool:
    """Route a model on transformers' SDPA attention through ``attention``, registered as ``name`` with SDPA's
    mask builder (without one transformers builds no mask, and padding is attended to); False (and the
    model untouched) for one on another attention (eager, flash, its own code)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, sdpa_mask)
    model.set_attn_implementation(name)
    return True


def attention_in_fp32(model) -> bool:
    """Route a model on transformers' SDPA attention through :func:`sdpa_in_fp32` (:func:`use_sdpa_attention`)."""
    return use_sdpa_attention(model, FP32_ATTENTION, sdpa_in_fp32)


# The config fields that hold the attention-probability dropout, by model family (BERT/RoBERTa/ELECTRA/
# DeBERTa, DistilBERT/BART-style, GPT-2-style).
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def attention_dropout_field(config) -> str | None:
    """The first of ATTENTION_DROPOUT_FIELDS a config has (None: none)."""
    return next((key for key in ATTENTION_DROPOUT_FIELDS if hasattr(config, key)), None)


def set_attention_dropout(config, p: float, name: str = "the model") -> str:
    """Set the attention-probability dropout of a transformers config; returns the field set. A value
    outside [0, 1) or a config without such a field is a ValueError naming it."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"attention_dropout must be in [0, 1), got {p}")
    key = attention_dropout_field(config)
    if key is not None:
        setattr(config, key, float(p))
        return key
    raise ValueError(
        f"attention_dropout: {name}'s config ({config.model_type}) has none of {', '.join(ATTENTION_DROPOUT_FIELDS)}"
    )


# BERT's pre-tokenizer cuts at every punctuation character, and so does pipeline("ner")'s idea of a word:
# Unicode's P* categories and these ASCII ranges ($, +, <, =, >, ^, `, |, ~ are symbols to Unicode).
_ASCII_PUNCT = ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E))
_BERT_PUNCT = "[\\p{P}" + "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in _ASCII_PUNCT) + "]"  # Oniguruma
# The class name that transformers 4 and 5 both load a tokenizer.json-only tokenizer with.
GENERIC_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def _is_bert_punct(c: str) -> bool:
    """Python's side of ``_BERT_PUNCT``."""
    import unicodedata

    return any(a <= ord(c) <= b for a, b in _ASCII_PUNCT) or unicodedata.category(c).startswith("P")


def require_wordpiece(tokenizer, option: str):
    """The Rust backend of a WordPiece (BERT-style, ``##`` continuation pieces) fast tokenizer; anything
    else is a ValueError saying that `option` needs one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = getattr(backend, "model", None)
    if type(model).__name__ != "WordPiece" or getattr(model, "continuing_subword_prefix", None) != "##":
        kind = type(model).__name__ if model is not None else "slow"
        raise ValueError(
            f"{option} needs a WordPiece tokenizer with '##' continuation pieces (BERT-style); "
            f"{getattr(tokenizer, 'name_or_path', 'this model')} has a {kind} tokenizer"
        )
    return backend


def word_pre_tokenizer(inner_punct: Iterable[str]):
    """A pre-tokenizer that cuts text at whitespace and splits punctuation off the edges of each word,
    but keeps punctuation inside a word (``AL-AIN``, ``U.S``, ``don't``) in the word, so that WordPiece
    gives its later parts continuation pieces (``al ##- ##ain``). Only the characters in ``inner_punct``
    stay inside words: the ones the vocabulary has a ``##`` piece for; any other punctuation is cut off as
    BERT's pre-tokenizer does, so no word becomes [UNK] for lack of a piece."""
    from tokenizers import Regex, pre_tokenizers

    p = _BERT_PUNCT
    keep = "".join(f"\\x{{{ord(c):X}}}" for c in sorted(set(inner_punct)))
    cut_anywhere = f"(?![{keep}]){p}" if keep else p
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            # punctuation runs at either edge of a word become pre-tokens of their own ...
            pre_tokenizers.Split(Regex(rf"\A{p}+|{p}+\z"), behavior="isolated"),
            # ... one character each (as BERT cuts them), and punctuation without a ## piece is cut anywhere
            pre_tokenizers.Split(Regex(rf"{p}(?={p}*\z)|{cut_anywhere}"), behavior="isolated"),
        ]
    )


def keep_words_whole(tokenizer):
    """A copy of a WordPiece (BERT-style) fast tokenizer whose words are the whitespace-separated words of
    the text, punctuation at their edges split off (see :func:`word_pre_tokenizer`).

    Why: ``pipeline("ner", aggregation_strategy="first")`` takes as a word the pieces up to the next piece
    without ``##``. BERT's own pre-tokenizer cuts ``AL-AIN`` into the words ``AL``, ``-``, ``AIN``, and the
    pipeline then labels each part by its own first piece, while CoNLL data, and our scoring, keep the word
    whole and label it by its first piece. With this pre-tokenizer the later parts are ``##`` pieces and the
    pipeline's words are the data's words. The result is a generic fast tokenizer: it is saved as
    ``tokenizer.json`` alone, which ``AutoTokenizer`` (transformers 4 and 5) loads as is. (Its regular
    expressions use Oniguruma's syntax, as tokenizers does; JavaScript ports were not tried.)"""
    import copy

    from transformers import PreTrainedTokenizerFast

    backend = require_wordpiece(tokenizer, "keep_words_whole")
    vocab = tokenizer.get_vocab()
    inner = [t[2:] for t in vocab if len(t) == 3 and t.startswith("##") and _is_bert_punct(t[2])]
    if not inner:
        raise ValueError(
            f"keep_words_whole: the vocabulary of {getattr(tokenizer, 'name_or_path', 'this tokenizer')} has no "
            "'##' piece for any punctuation character, so no word could be kept whole; leave the option off"
        )
    backend = copy.deepcopy(backend)
    backend.pre_tokenizer = word_pre_tokenizer(inner)
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    lower = getattr(tokenizer, "do_lower_case", None)
    if isinstance(lower, bool):  # saved in tokenizer_config.json, where the card looks for it
        special["do_lower_case"] = lower
    whole = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=tokenizer.model_max_length,
        model_input_names=list(tokenizer.model_input_names),
        padding_side=tokenizer.padding_side,
        name_or_path=tokenizer.name_or_path,
        **special,
    )
    whole.do_lower_case = lower  # read by the card
    return whole


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """``tokenizer.save_pretrained(folder)``; a generic fast tokenizer is recorded under the class name
    transformers 4 knows too (transformers 5 writes its own new name, which 4 cannot load)."""
    import json

    from nerforge.atomic import write_json_atomic

    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = GENERIC_TOKENIZER_CLASS
        write_json_atomic(path, config)


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
