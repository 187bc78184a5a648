"""The baseline that bench/run.py compares against: the original notebook's recipe, written out.

* raw CoNLL files read with a plain Python line loop, tags converted IOB1 -> IOB2 (the notebook used
  the HF `conll2003` dataset, whose tags are IOB2, in this label order);
* one tokenizer call per sentence, `padding="max_length", truncation=True, max_length=120`, first
  sub-word labelled, other pieces and specials -100;
* HF `Trainer` (lr 2e-5, batch 16, weight decay 0.01, no saving, no evaluation, CPU);
* inference with `pipeline("ner")`, one sentence at a time.

Nothing here imports nerforge: the baseline stays independent of the code it is compared with.
"""

from __future__ import annotations

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def iob1_to_iob2(tags: list[str]) -> list[str]:
    out, prev = [], "O"
    for t in tags:
        if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]):
            t = "B-" + t[2:]
        out.append(t)
        prev = t
    return out


def read_conll_lines(path) -> tuple[list[list[str]], list[list[str]], list[int]]:
    """(sentences, IOB2 tags, document index per sentence) from a CoNLL-2003 file, line by line."""
    sents, tags, docs = [], [], []
    words, labs, doc = [], [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("-DOCSTART-"):
                doc += 1
                continue
            if not line.strip():
                if words:
                    sents.append(words)
                    tags.append(iob1_to_iob2(labs))
                    docs.append(doc)
                    words, labs = [], []
                continue
            parts = line.split(" ")
            words.append(parts[0])
            labs.append(parts[-1])
    if words:
        sents.append(words)
        tags.append(iob1_to_iob2(labs))
        docs.append(doc)
    return sents, tags, docs


def tokenize_notebook(tokenizer, sents, tags, *, pad_to_max: bool = True, max_length: int = 120) -> list[dict]:
    """One tokenizer call per sentence; first-sub-word labels. pad_to_max=False: no padding (run_ner)."""
    label2id = {name: i for i, name in enumerate(LABELS)}
    rows = []
    for words, labs in zip(sents, tags):
        enc = tokenizer(
            words,
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            padding="max_length" if pad_to_max else False,
        )
        labels, prev = [], None
        for w in enc.word_ids():
            if w is None:
                labels.append(-100)
            elif w != prev:
                labels.append(label2id[labs[w]])
            else:
                labels.append(-100)
            prev = w
        row = {k: list(v) for k, v in enc.items()}
        row["labels"] = labels
        rows.append(row)
    return rows


def load_model(model_path: str):
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        model_path,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )


def training_args(output_dir: str, *, max_steps: int = -1, num_train_epochs: float = 5, seed: int = 42):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        learning_rate=2e-5,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=num_train_epochs,
        max_steps=max_steps,
        weight_decay=0.01,
        report_to="none",
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        dataloader_num_workers=0,
    )


def predict_words_trainer(trainer, tokenizer, sents, max_length: int = 120) -> tuple[list[list[str]], int]:
    """Word-level tags from the first piece of each word (the notebook's evaluation); words cut off by
    truncation get 'O'. Returns (tags, number of words left unpredicted)."""
    import numpy as np

    rows = tokenize_notebook(tokenizer, sents, [["O"] * len(s) for s in sents], pad_to_max=False, max_length=max_length)
    pred = trainer.predict(rows)
    ids = np.argmax(pred.predictions, axis=-1)
    out, missing = [], 0
    for i, words in enumerate(sents):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        tags, prev = ["O"] * len(words), None
        seen = set()
        for pos, w in enumerate(enc.word_ids()):
            if w is not None and w != prev:
                tags[w] = LABELS[int(ids[i][pos])]
                seen.add(w)
            prev = w
        missing += len(words) - len(seen)
        out.append(tags)
    return out, missing
