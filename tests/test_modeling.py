"""Optimizer construction and gradient clipping with sparse word-embedding gradients."""

import pytest
import torch

from nerforge.modeling import build_optimizers, clip_grad_norm, param_groups


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(12, 4)
        self.dense = torch.nn.Linear(4, 3)
        self.LayerNorm = torch.nn.LayerNorm(3)

    def get_input_embeddings(self):
        return self.emb

    def forward(self, ids):
        return self.LayerNorm(self.dense(self.emb(ids))).pow(2).sum()


def grads_after(sparse: bool, ids, scale: float = 1.0):
    torch.manual_seed(0)
    m = Tiny()
    m.emb.sparse = sparse
    (scale * m(ids)).backward()
    return m


@pytest.mark.parametrize("scale, clipped", [(100.0, True), (1e-3, False)])
def test_clip_grad_norm_on_sparse_gradients_matches_dense_clipping(scale, clipped):
    ids = torch.tensor([[1, 5, 1, 1], [7, 5, 2, 1]])  # repeated rows: summed before they are squared
    dense, sparse = grads_after(False, ids, scale), grads_after(True, ids, scale)
    want = torch.nn.utils.clip_grad_norm_(dense.parameters(), 1.0)
    got = clip_grad_norm(sparse.parameters(), 1.0)
    assert torch.allclose(got, want, rtol=1e-5)
    assert (want > 1.0) == clipped
    assert sparse.emb.weight.grad.is_sparse and sparse.emb.weight.grad.is_coalesced()
    assert torch.allclose(sparse.emb.weight.grad.to_dense(), dense.emb.weight.grad, rtol=1e-5, atol=1e-7)
    for a, b in zip(list(sparse.parameters())[1:], list(dense.parameters())[1:]):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_sparse_optimizers_update_only_the_rows_a_batch_uses():
    ids = torch.tensor([[1, 5, 3]])
    for sparse in (False, True):
        torch.manual_seed(0)
        m = Tiny()
        before = m.emb.weight.detach().clone()
        optimizers = build_optimizers(m, learning_rate=1e-2, weight_decay=0.01, sparse_embeddings=sparse)
        assert len(optimizers) == (2 if sparse else 1)
        adamw_params = {id(p) for g in optimizers[0].param_groups for p in g["params"]}
        assert (id(m.emb.weight) in adamw_params) is not sparse
        m(ids).backward()
        clip_grad_norm(m.parameters(), 1.0)
        for o in optimizers:
            o.step()
        moved = (m.emb.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
        # dense AdamW decays every row; SparseAdam touches only rows 1, 3 and 5
        assert moved == ([1, 3, 5] if sparse else list(range(12)))


def test_param_groups_skip_and_no_decay():
    m = Tiny()
    decay, no_decay = param_groups(m, 0.01, skip=[m.emb.weight])
    assert [p.shape for p in decay["params"]] == [m.dense.weight.shape]
    assert {id(p) for p in no_decay["params"]} == {id(m.dense.bias), id(m.LayerNorm.weight), id(m.LayerNorm.bias)}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


def test_sparse_updates_need_an_embedding_layer():
    m = Tiny()
    m.get_input_embeddings = lambda: torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a torch.nn.Embedding"):
        build_optimizers(m, 1e-3, 0.01, sparse_embeddings=True)


def test_position_limit_counts_robertas_reserved_positions():
    from transformers import BertConfig, RobertaConfig

    from nerforge.modeling import position_limit

    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(BertConfig(max_position_embeddings=0)) is None


def test_attention_dropout_is_set_in_the_config_the_model_is_built_from(quickstart_export):
    from transformers import BertConfig, DistilBertConfig, T5Config

    from nerforge.modeling import load_model_and_tokenizer, set_attention_dropout

    assert set_attention_dropout(BertConfig(), 0.0) == "attention_probs_dropout_prob"
    d = DistilBertConfig()
    assert set_attention_dropout(d, 0.05) == "attention_dropout" and d.attention_dropout == 0.05
    with pytest.raises(ValueError, match="has none of attention_probs_dropout_prob"):
        set_attention_dropout(T5Config(), 0.0, "t5")
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        set_attention_dropout(BertConfig(), 1.0)
    model, _ = load_model_and_tokenizer(str(quickstart_export), ["O", "B-PER", "I-PER"], attention_dropout=0.0)
    assert model.config.attention_probs_dropout_prob == 0.0
    drops = {m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "attention.self" in name}
    attn = model.bert.encoder.layer[0].attention.self
    assert drops <= {0.0} and getattr(attn, "dropout_prob", 0.0) == 0.0
    default, _ = load_model_and_tokenizer(str(quickstart_export), ["O", "B-PER", "I-PER"])
    assert default.config.attention_probs_dropout_prob == 0.1


@pytest.mark.parametrize(
    "setting, precision, device, dropout, want",
    [
        ("auto", "bf16", "cpu", 0.0, True),
        ("auto", "bf16", "cpu", 0.1, False),  # the math path runs: bf16 is as fast there
        ("auto", "bf16", "cpu", None, False),
        ("auto", "bf16", "cuda", 0.0, False),
        ("auto", "fp16", "cpu", 0.0, True),
        ("auto", "no", "cpu", 0.0, False),
        ("fp32", "bf16", "cuda", 0.1, True),
        ("fp32", "no", "cuda", 0.0, False),
        ("mixed", "bf16", "cpu", 0.0, False),
    ],
)
def test_fp32_attention_only_under_mixed_precision_and_auto_only_on_cpu_without_dropout(
    setting, precision, device, dropout, want
):
    from nerforge.modeling import wants_fp32_attention

    assert wants_fp32_attention(setting, precision, device, dropout) is want


def test_unknown_attention_precision_is_an_error_and_the_dropout_is_read_from_the_config():
    from transformers import BertConfig, DistilBertConfig, T5Config

    from nerforge.modeling import attention_dropout_of, wants_fp32_attention

    with pytest.raises(ValueError, match="auto, fp32 or mixed, got 'bf16'"):
        wants_fp32_attention("bf16", "bf16", "cpu", 0.0)
    assert attention_dropout_of(BertConfig(attention_probs_dropout_prob=0.0)) == 0.0
    assert attention_dropout_of(DistilBertConfig(attention_dropout=0.2)) == 0.2
    assert attention_dropout_of(T5Config()) is None


def test_sdpa_in_fp32_runs_the_attention_in_fp32_under_bf16_autocast_and_returns_bf16():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from nerforge.modeling import sdpa_in_fp32

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.is_causal = False
    q, k, v = (torch.randn(2, 4, 7, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False  # the second row's last two pieces are padding
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = sdpa_in_fp32(module, q, k, v, mask)
        mixed, _ = sdpa_attention_forward(module, q, k, v, mask)
    want, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), mask)
    assert out.dtype == torch.bfloat16 and out.shape == mixed.shape
    # fp32 attention rounded once at the end, not bf16 attention: equal to the fp32 result cast to bf16
    assert torch.equal(out, want.to(torch.bfloat16))
    assert not torch.equal(mixed, out)  # bf16 attention differs from it (else this test proves nothing)
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0


def test_attention_in_fp32_is_set_for_training_and_never_saved(quickstart_export, tmp_path):
    from transformers import AutoModelForTokenClassification

    from nerforge.modeling import FP32_ATTENTION, attention_in_fp32

    model = AutoModelForTokenClassification.from_pretrained(str(quickstart_export))
    assert model.config._attn_implementation == "sdpa"
    # a padded batch: the second row's last two pieces are padding, which the attention must not see
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 7, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[1:, :3]).logits
    assert torch.allclose(before[1, :3], alone[0], atol=1e-5)  # (else the test would prove nothing)
    assert attention_in_fp32(model) is True
    assert model.config._attn_implementation == FP32_ATTENTION
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask).logits  # the same attention in fp32: the same logits
    assert torch.allclose(before, after, atol=1e-5)
    model.save_pretrained(tmp_path / "saved")
    assert FP32_ATTENTION not in (tmp_path / "saved" / "config.json").read_text()
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "saved").config._attn_implementation == "sdpa"
    eager = AutoModelForTokenClassification.from_pretrained(str(quickstart_export), attn_implementation="eager")
    assert attention_in_fp32(eager) is False and eager.config._attn_implementation == "eager"
