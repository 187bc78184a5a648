"""Tiny made-up CoNLL snippets for the conll2003_loader tests (no Reuters text)."""

from pathlib import Path

TRAIN = """-DOCSTART- -X- O O

Alice NNP I-NP I-PER
Smith NNP I-NP I-PER
visited VBD I-VP O
Paris NNP I-NP I-LOC
. . O O

Acme NNP I-NP I-ORG
Corp NNP I-NP I-ORG
Beta NNP B-NP B-ORG
. . O O

-DOCSTART- -X- O O

Bob NNP I-NP I-PER
runs VBZ I-VP O
"""
VALID = """-DOCSTART- -X- O O

Carol NNP I-NP I-PER
sings VBZ I-VP O
"""
TEST = """-DOCSTART- -X- -X- O

Zed NNP I-NP I-MISC
Cup NNP I-NP I-MISC

Dan NNP I-NP I-PER
"""
NAMES = {"eng": ("eng.train", "eng.testa", "eng.testb"), "txt": ("train.txt", "valid.txt", "test.txt")}


def write_corpus(folder: Path, naming: str = "txt", texts=(TRAIN, VALID, TEST)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in zip(NAMES[naming], texts):
        (folder / name).write_text(text, encoding="utf-8")
    return folder
