"""Dropout whose masks are cheap to draw on a CPU (training only).

torch's CPU dropout draws one Bernoulli sample per element from its Mersenne Twister, one element at a
time whatever the thread count (about 15 ns an element on the 2-core AMX machine of BENCHMARKS.md): at the
MiniLM recipe's shape the masks took 36-42% of a training step, most of it the attention-probability
dropout over the full attention matrices. Here a mask comes from 16-bit uniform integers, four from each
64-bit draw of the same generator (seeded as before, so a run stays reproducible), compared with a
threshold: an element is dropped with probability round(p * 65536) / 65536, which differs from p by at
most 2^-17, and the kept ones are scaled by the inverse of the kept fraction, as torch does.

The attention-probability dropout sits inside PyTorch's SDPA, which takes no mask of ours; a model on
transformers' SDPA attention gets an attention that computes softmax(QK^T / sqrt(d) + mask) and drops from
it the same way (what SDPA's math path does in training), under a name registered with transformers'
AttentionInterface and SDPA's mask builder. Nothing of this is saved: the modules hold no weights and
transformers writes no attention implementation into config.json, so an export loads as plain SDPA.
"""

from __future__ import annotations

import math

import torch

from nerforge.modeling import in_fp32, use_sdpa_attention

FAST_DROPOUT_ATTENTION = "nerforge_sdpa_fast_dropout"
FAST_DROPOUT_ATTENTION_FP32 = "nerforge_sdpa_fast_dropout_fp32"  # the same, the attention in fp32


def wants_fast_dropout(setting: str, device_type: str) -> bool:
    """Whether training_config.dropout_masks ``setting`` asks for these masks on ``device_type``: 'fast'
    always, 'torch' never, 'auto' on a CPU only (CUDA draws its masks in parallel already)."""
    if setting not in ("auto", "torch", "fast"):
        raise ValueError(f"dropout_masks must be auto, torch or fast, got {setting!r}")
    return setting == "fast" or (setting == "auto" and device_type == "cpu")


def drop_mask(shape, p: float, device) -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape``, True where an element is dropped (probability round(p * 65536) / 65536),
    and the factor that scales the kept ones."""
    dropped = round(p * 65536)
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)  # all 64 bits
    mask = words.view(torch.int16)[:n].view(shape) < dropped - 32768
    return mask, 65536 / (65536 - dropped)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x`` with :func:`drop_mask`'s masks; ``x`` itself when not training or p is 0."""
    if not training or p == 0:
        return x
    if p >= 1:
        return x * 0
    mask, scale = drop_mask(x.shape, p, x.device)
    return x.masked_fill(mask, 0).mul_(scale)


class FastDropout(torch.nn.Dropout):
    """torch.nn.Dropout drawing :func:`drop_mask`'s masks (``inplace`` is not honoured)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def sdpa_fast_dropout(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, but in training with attention dropout it computes SDPA's math path
    itself, dropping from the probabilities with :func:`fast_dropout`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        dropout == 0
        or not module.training
        or is_causal
        or kwargs.get("position_bias") is not None
        or getattr(module, "num_key_value_groups", 1) > 1
    )
    if plain:  # no dropout to draw, or a case SDPA handles that this does not: SDPA itself
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask.to(scores.dtype)
    probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    out = torch.matmul(probs.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), None


def _attention(fp32: bool):
    """:func:`sdpa_fast_dropout`, computed in fp32 (:func:`nerforge.modeling.in_fp32`) or under the caller's autocast."""
    return in_fp32(sdpa_fast_dropout) if fp32 else sdpa_fast_dropout


def use_fast_dropout(model, attention_dropout: float | None, attention_in_fp32: bool = False) -> tuple[int, str | None]:
    """Swap every torch.nn.Dropout of ``model`` for :class:`FastDropout` and, for a model on transformers'
    SDPA attention with an ``attention_dropout`` above 0 (or ``attention_in_fp32``), route its attention
    through the fast-dropout attention (in fp32 with ``attention_in_fp32``). Returns the number of modules
    swapped and the attention's registered name (None: the model's attention left as it was)."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                swapped += 1
    if not (attention_dropout or attention_in_fp32):
        return swapped, None
    name = FAST_DROPOUT_ATTENTION_FP32 if attention_in_fp32 else FAST_DROPOUT_ATTENTION
    return swapped, (name if use_sdpa_attention(model, name, _attention(attention_in_fp32)) else None)
