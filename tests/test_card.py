"""Tests for nerforge.card (training curve, model card) and nerforge.atomic (atomic writes), offline."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from nerforge.atomic import atomic_write_text, write_json_atomic  # noqa: E402
from nerforge.card import plot_training_curve, render_model_card  # noqa: E402
from nerforge.config import SECTIONS, DataConfig, ModelConfig, RunConfig, TrainingConfig  # noqa: E402
from nerforge.hub import check_export_dir  # noqa: E402

NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"


def make_tiny_export(folder: Path) -> Path:
    """A real (tiny) export: BERT with 2 layers / hidden 32, tokenizer, config with CoNLL labels."""
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "My",
        "name",
        "is",
        "Clara",
        "and",
        "I",
        "live",
        "in",
        "Berkeley",
        ",",
        "California",
        ".",
        "EU",
        "rejects",
        "German",
        "call",
        "##s",
    ]
    vocab_file = folder.parent / f"{folder.name}-vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=False)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        id2label=dict(enumerate(NER)),
        label2id={n: i for i, n in enumerate(NER)},
    )
    model = BertForTokenClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def split_scores(f1: float, seed: float) -> dict:
    return {
        "precision": 0.9 + seed,
        "recall": 0.8 + seed,
        "f1": f1,
        "accuracy": 0.97 + seed / 10,
        "weighted_f1": f1 - 0.01,
        "per_type": {
            "PER": {"precision": 0.951 + seed, "recall": 0.9612, "f1": 0.95612, "support": 1617},
            "ORG": {"precision": 0.8813, "recall": 0.87 + seed, "f1": 0.8756, "support": 1661},
            "LOC": {"precision": 0.9234, "recall": 0.9345, "f1": 0.9289 - seed, "support": 1668},
            "MISC": {"precision": 0.7955, "recall": 0.8123, "f1": 0.8038, "support": 702},
        },
        "num_sentences": 3453,
        "num_words": 46435,
        "loss": 0.1234 + seed,
    }


METRICS = {
    "validation": split_scores(0.9456, 0.0123),
    "test": split_scores(0.9131, 0.0045),
    "best_step": 120,
    "history": [
        {"step": 10, "epoch": 0.3, "loss": 1.23, "learning_rate": 1e-5},
        {"step": 20, "epoch": 0.6, "loss": 0.71, "learning_rate": 2e-5},
        {"step": 20, "epoch": 0.6, "eval_f1": 0.81, "eval_loss": 0.4},
        {"step": 30, "epoch": 0.9, "loss": 0.35, "learning_rate": 1.5e-5},
        {"step": 40, "epoch": 1.2, "eval_f1": 0.88, "eval_loss": 0.3},
    ],
    "num_processes": 1,
    "train_runtime_s": 60.2,
    "effective_batch_size": 16,
}

SECRET = "hf_SECRETSECRETSECRETSECRET123"


def run_config() -> RunConfig:
    """The resolved configuration of a bert-large-cased run; a Hub token pasted into a setting by mistake."""
    return RunConfig(
        ModelConfig(model_name_or_path="bert-large-cased"),
        DataConfig(data_dir="/data/conll2003", preprocessing_num_workers=2),
        TrainingConfig(
            learning_rate=2e-5,
            num_train_epochs=5.0,
            hub_model_id="someone/bert-large-cased-conll03",
            hub_commit_message=f"Upload NER model trained with nerforge {SECRET}",
        ),
    )


RUN_CONFIG = run_config()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def rendered(tiny_export):
    (tiny_export / "training_config.yaml").write_text(yaml.safe_dump(RUN_CONFIG.to_dict(), sort_keys=False))
    write_json_atomic(tiny_export / "metrics.json", METRICS)
    plot_training_curve(METRICS["history"], tiny_export / "training_curve.png")
    card = render_model_card(
        tiny_export, RUN_CONFIG, metrics=METRICS, label_names=NER, repo_id="someone/bert-large-cased-conll03"
    )
    return tiny_export, card


def test_card_parses_with_expected_metadata(rendered):
    from huggingface_hub import ModelCard

    folder, returned = rendered
    card = ModelCard.load(folder / "README.md")
    assert str(card) == str(returned)
    data = card.data
    assert data.pipeline_tag == "token-classification"
    assert data.library_name == "transformers"
    assert data.base_model == "bert-large-cased"
    assert data.language == "en"
    assert data.license == "apache-2.0"
    assert data.datasets == ["conll2003"]
    assert set(data.tags) >= {"token-classification", "ner", "conll2003", "nerforge"}
    assert data.metrics == ["precision", "recall", "f1", "accuracy"]
    assert data.get("widget") and "Clara" in data.get("widget")[0]["text"]


def test_model_index_holds_exactly_the_passed_numbers(rendered):
    from huggingface_hub import ModelCard

    card = ModelCard.load(rendered[0] / "README.md")
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    expected = {
        (split, m): METRICS[split][m]
        for split in ("validation", "test")
        for m in ("precision", "recall", "f1", "accuracy")
    }
    assert got == expected
    assert all(r.task_type == "token-classification" for r in card.data.eval_results)
    assert card.data.model_name == "bert-large-cased-conll03"
    assert "model-index" in card.data.to_dict()


def test_rendered_export_is_complete_for_push(rendered):
    assert check_export_dir(rendered[0]) == rendered[0]


def test_card_body_tables_and_numbers(rendered):
    text = (rendered[0] / "README.md").read_text()
    for split in ("validation", "test"):
        s = METRICS[split]
        assert (
            f"| {100 * s['precision']:.2f} | {100 * s['recall']:.2f} | {100 * s['f1']:.2f} | "
            f"{100 * s['accuracy']:.2f} |" in text
        )
        for name, row in s["per_type"].items():
            line = (
                f"| {name} | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
                f"{100 * row['f1']:.2f} | {row['support']} |"
            )
            assert line in text, line
    assert "![training curve](training_curve.png)" in text
    assert 'pipeline("ner", model="someone/bert-large-cased-conll03", aggregation_strategy="first")' in text
    assert "IOB2" in text and "CrossWeigh" in text
    assert "without document context" in text
    assert "Capitalisation matters" in text  # cased tokenizer (do_lower_case False in tokenizer_config)
    for fw in ("transformers", "torch", "datasets", "accelerate", "tokenizers", "huggingface_hub", "nerforge"):
        assert re.search(rf"^- {fw} \S+", text, re.M), fw


def test_every_hyperparameter_is_in_the_card_but_no_secret(rendered):
    text = (rendered[0] / "README.md").read_text()
    for section, values in RUN_CONFIG.to_dict().items():
        for key in values:
            assert f"| `{key}` |" in text, f"{section}.{key} missing from the card"
    assert "| `learning_rate` | `2e-05` |" in text
    assert "| `num_train_epochs` | `5.0` |" in text
    assert "hub_token" not in text and "SECRETSECRET" not in text and "<redacted>" in text
    for fact in ("best_step", "effective_batch_size", "num_processes", "train_runtime_s"):
        assert f"| {fact} | {METRICS[fact]} |" in text


def test_training_curve_png(rendered, tmp_path):
    png = rendered[0] / "training_curve.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    for name, history in {
        "loss_only": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}],
        "single": [{"step": 5, "eval_f1": 0.5}],
        "empty": [],
        "nan": [{"step": 1, "loss": float("nan")}, {"epoch": 1.0, "loss": 0.3}],
    }.items():
        out = tmp_path / f"{name}.png"
        plot_training_curve(history, out)
        assert out.read_bytes()[:8] == PNG_MAGIC, name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_context_uncased_local_model_and_iob1(tmp_path):
    cfg = run_config()
    cfg.model.model_name_or_path = str(tmp_path)  # a local folder: no base_model
    cfg.data.context_size = 128
    cfg.data.pack_length = 200
    cfg.data.tagging_scheme = "iob1"
    cfg.model.license = "mit"
    metrics = {"validation": METRICS["validation"]}  # no test split
    card = render_model_card(tmp_path / "exp", cfg, metrics=metrics, label_names=NER, do_lower_case=True)
    text = card.text if hasattr(card, "text") else str(card)
    assert card.data.base_model is None
    assert card.data.license == "mit"
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert "--context-size 128 --pack-length 200" in str(card) and "128 word pieces" in str(card)
    assert "up to 200 word pieces" in str(card)
    assert "Capitalisation is not used" in str(card)
    assert "IOB1" in str(card)
    assert 'model="path/to/this/folder"' in str(card)
    assert "![training curve]" not in text  # no PNG in that folder


def test_context_card_says_what_one_sentence_at_a_time_scores(tmp_path):
    cfg = run_config()
    cfg.data.context_size = 64
    text = str(render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER))
    assert "may score lower" in text and "Tagged one sentence at a time" not in text  # no figures: no claim
    assert "has no document context" in text and "entities reported\nbelow" not in text
    alone = {"validation": {"f1": 0.8123}, "test": {"f1": 0.7456}}
    text = str(render_model_card(tmp_path, cfg, metrics={**METRICS, "sentence_alone": alone}, label_names=NER))
    v, t = (f"{100 * METRICS[s]['f1']:.2f}" for s in ("validation", "test"))
    said = " ".join(text.split())
    assert f"validation F1 81.23 against {v} with document context, test F1 74.56 against {t}" in said
    assert "may score lower" not in text and "one sentence at a time instead" not in text
    cfg.data.sentence_alone_fraction = 0.25
    said = " ".join(str(render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER)).split())
    assert "; 25.0% of the training documents were seen one sentence at a time instead, without context" in said
    cfg.data.context_size, cfg.data.sentence_alone_fraction = 0, 0.0  # no context: the pipeline returns what we scored
    text = " ".join(str(render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER)).split())
    assert "returns the entities reported below" in text and "has no document context" not in text
    assert "cuts a word at punctuation inside it" in text and "keeps punctuation inside a word" not in text
    cfg.model.keep_words_whole = True  # the tokenizer's words are the data's words: the card says so, not the caveat
    text = " ".join(str(render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER)).split())
    assert "keeps punctuation inside a word in that word" in text and "cuts a word at punctuation" not in text
    assert "is a word of its own to the pipeline and was not trained" in text  # first-piece labels: the caveat
    cfg.data.label_edge_punctuation = True  # the split-off punctuation was trained: the pipeline joins it
    text = " ".join(str(render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER)).split())
    assert "was trained with its word's label, so the pipeline joins it to that word" in text
    assert "punctuation split off a word's edges was trained too" in text and "was not trained" not in text


def test_uncased_from_model_name_and_tiny_model(tmp_path):
    cfg = run_config()
    cfg.model.model_name_or_path = "bert-base-uncased"
    card = render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER)
    assert "Capitalisation is not used" in str(card) and card.data.base_model == "bert-base-uncased"
    cfg.model.tiny_model = True
    card = render_model_card(tmp_path, cfg, metrics=METRICS, label_names=NER)
    assert card.data.base_model is None and "tiny BERT" in str(card)


def test_template_has_no_typed_in_results():
    template = re.sub(r"\{%.*?%\}", "", TEMPLATE.read_text(), flags=re.S)  # drop Jinja statements
    assert not re.search(r"\d+\.\d+", template), "decimal number typed into the template"
    assert not re.search(r"\d\s*%", template), "percentage typed into the template"


def test_atomic_writes(tmp_path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"f1": 0.5, "name": "é"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"f1": 0.5, "name": "é"}
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text(encoding="utf-8"))["f1"] == 0.5  # old content kept
    atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "sub"]


def test_no_config_field_can_hold_a_secret():
    """The card prints every setting: a field such as hub_token or api_key must never exist (the token
    comes from HF_TOKEN or `hf auth login`). Parts are split on _ (label_all_tokens is not a secret)."""
    import dataclasses

    secret_parts = {"token", "secret", "password", "passwd", "apikey", "credential", "credentials"}

    def is_secret(key: str) -> bool:
        parts = [p for p in re.split(r"[_\-.\s]+", key.lower()) if p]
        if any(p in secret_parts for p in parts):
            return True
        return len(parts) >= 2 and parts[-1] == "key" and parts[-2] in {"api", "access", "secret", "private"}

    assert is_secret("hub_token") and is_secret("use_auth_token") and is_secret("api_key")
    assert not is_secret("label_all_tokens") and not is_secret("tokenizer_name")
    fields = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert "label_all_tokens" in fields and not [f for f in fields if is_secret(f)]


def test_written_files_get_the_umasks_modes_not_mkstemps(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        atomic_write_text(tmp_path / "b.md", "text")
        plot_training_curve([], tmp_path / "c.png")
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {
            "a.json": 0o644,
            "b.md": 0o644,
            "c.png": 0o644,
        }
        os.umask(0o077)
        write_json_atomic(tmp_path / "a.json", {"x": 2})
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
