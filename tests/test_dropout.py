"""nerforge.dropout: masks drawn four to a 64-bit word, the attention that drops with them, and the swap
into a model (which must leave an export that loads as plain SDPA)."""

import pytest
import torch

from nerforge.dropout import (
    FAST_DROPOUT_ATTENTION,
    FAST_DROPOUT_ATTENTION_FP32,
    FastDropout,
    _attention,
    drop_mask,
    fast_dropout,
    use_fast_dropout,
    wants_fast_dropout,
)


def test_decision_table():
    assert wants_fast_dropout("auto", "cpu") and not wants_fast_dropout("auto", "cuda")
    assert wants_fast_dropout("fast", "cuda") and not wants_fast_dropout("torch", "cpu")
    with pytest.raises(ValueError, match="dropout_masks"):
        wants_fast_dropout("quick", "cpu")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_16_bit_lane_drops_with_probability_p(p):
    # 4 x 250,000 draws: the dropped fraction's standard error is under 0.001; a lane from the top of a
    # 63-bit draw (random_() without its full range) would drop with probability 0 or 2p and fail here
    torch.manual_seed(0)
    mask, scale = drop_mask((250_000, 4), p, "cpu")
    assert mask.dtype == torch.bool and mask.shape == (250_000, 4)
    for lane in range(4):
        assert abs(mask[:, lane].float().mean().item() - p) < 0.005
    assert scale == pytest.approx(1 / (1 - round(p * 65536) / 65536))
    # neighbouring lanes are independent
    both = (mask[:, 0] & mask[:, 1]).float().mean().item()
    assert abs(both - p * p) < 0.005


def test_same_seed_same_mask_and_odd_sizes():
    torch.manual_seed(3)
    a, _ = drop_mask((7, 3), 0.3, "cpu")  # 21 elements: not a multiple of 4
    torch.manual_seed(3)
    b, _ = drop_mask((7, 3), 0.3, "cpu")
    assert torch.equal(a, b) and a.shape == (7, 3)


def test_fast_dropout_scales_the_kept_and_backpropagates_through_the_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 128, requires_grad=True)
    y = fast_dropout(x, 0.25)
    kept = y != 0
    scale = 65536 / (65536 - 16384)
    assert torch.allclose(y[kept], x[kept] * scale)
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() * scale)
    assert fast_dropout(x, 0.25, training=False) is x and fast_dropout(x, 0.0) is x
    assert torch.count_nonzero(fast_dropout(x, 1.0)) == 0


def test_fast_dropout_module_is_a_dropout():
    m = FastDropout(0.2)
    assert isinstance(m, torch.nn.Dropout) and m.p == 0.2
    x = torch.ones(1000)
    assert torch.count_nonzero(m(x) == 0) > 0
    m.eval()
    assert torch.equal(m(x), x)


class _Module(torch.nn.Module):
    pass


@pytest.mark.parametrize("fp32", [False, True])
def test_attention_equals_sdpa_when_nothing_is_dropped_and_masks_padding(fp32):
    # p = 1e-9 rounds to 0 of 65536: the dropout branch runs but drops nothing, so it must equal SDPA
    torch.manual_seed(0)
    module = _Module().train()
    q, k, v = (torch.randn(2, 4, 10, 8) for _ in range(3))
    mask = torch.ones(2, 1, 10, 10, dtype=torch.bool)
    mask[1, ..., 6:] = False  # the second sequence has 6 real keys
    attention = _attention(fp32)
    out, _ = attention(module, q, k, v, mask, dropout=1e-9)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    assert out.shape == (2, 10, 4, 8)
    assert torch.allclose(out, want, atol=1e-5)
    # padding keys changed: the masked sequence's output does not move
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 6:] += 5
    v2[1, :, 6:] += 5
    out2, _ = attention(module, q, k2, v2, mask, dropout=1e-9)
    assert torch.allclose(out2[1], out[1], atol=1e-5)
    # with dropout: some probabilities dropped, the same ones again under the same seed
    torch.manual_seed(1)
    d1, _ = attention(module, q, k, v, mask, dropout=0.5)
    torch.manual_seed(1)
    d2, _ = attention(module, q, k, v, mask, dropout=0.5)
    assert torch.equal(d1, d2) and not torch.allclose(d1, out, atol=1e-3)


def test_attention_under_bf16_autocast_keeps_the_precision_asked_for():
    module = _Module().train()
    q, k, v = (torch.randn(1, 2, 6, 8) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = _attention(False)(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), None, dropout=0.1)
        fp32, _ = _attention(True)(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), None, dropout=0.1)
    assert mixed.dtype == fp32.dtype == torch.bfloat16  # output in the query's dtype either way
    # (an fp32 run must not get bf16 products: the comparison at atol 1e-5 above fails if autocast is on)


def _tiny_bert(tmp_path, attention_dropout=0.1, attn="sdpa"):
    from transformers import AutoModelForTokenClassification

    from nerforge.modeling import build_tiny_bert

    path = build_tiny_bert(["Mara", "visited", "Port", "Ellis", "."], ["O", "B-PER", "I-PER"], tmp_path / "tiny")
    return AutoModelForTokenClassification.from_pretrained(
        path, attention_probs_dropout_prob=attention_dropout, attn_implementation=attn
    )


def test_swap_into_a_model_trains_and_saves_plain(tmp_path):
    from transformers import AutoModelForTokenClassification

    model = _tiny_bert(tmp_path)
    n_dropout = sum(type(m) is torch.nn.Dropout for m in model.modules())
    swapped, name = use_fast_dropout(model, 0.1)
    assert swapped == n_dropout > 0 and name == FAST_DROPOUT_ATTENTION
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    model.train()
    ids = torch.tensor([[2, 5, 6, 7, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    torch.manual_seed(0)
    loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([[-100, 1, 0, 0, -100, -100, -100]])).loss
    loss.backward()
    assert torch.isfinite(loss) and model.classifier.weight.grad is not None
    model.eval()  # no dropout in evaluation: the same logits as the model before the swap
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).logits
        plain = _tiny_bert(tmp_path / "again").eval()(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(ours, plain, atol=1e-5)
    model.save_pretrained(tmp_path / "saved")
    assert "nerforge" not in (tmp_path / "saved" / "config.json").read_text()
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "saved").config._attn_implementation == "sdpa"


def test_swap_leaves_the_attention_alone_without_its_dropout_or_sdpa(tmp_path):
    assert use_fast_dropout(_tiny_bert(tmp_path, attention_dropout=0.0), 0.0)[1] is None
    assert (
        use_fast_dropout(_tiny_bert(tmp_path / "b", attention_dropout=0.0), 0.0, True)[1] == FAST_DROPOUT_ATTENTION_FP32
    )
    swapped, name = use_fast_dropout(_tiny_bert(tmp_path / "c", attn="eager"), 0.1)
    assert swapped > 0 and name is None
