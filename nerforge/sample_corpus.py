"""A small made-up corpus in the CoNLL-2003 layout, for the offline quick start and the tests.

`nerforge data sample OUT_DIR` writes train.txt / valid.txt / test.txt: sentences filled from
templates with invented names, all four entity types, multi-word entities, two entities of one type
touching (IOB1's B- tag), documents separated by -DOCSTART-. Tags are IOB1 like the original files.
The copy in nerforge/sample_data/ is this function's output (a test checks it).
"""

from __future__ import annotations

import random
from pathlib import Path

# Invented names: (words, entity type).
PER = [
    "Mara Lindqvist",
    "Tomas Okafor",
    "Ilse Brandauer",
    "Kenji Watanabe",
    "Aisha Mbeki",
    "Pavel Horak",
    "Lucia Ferreira",
    "Oren Shalev",
    "Nadia Petrova",
    "Samir Haddad",
    "Greta Olsen",
    "Diego Alvarez",
]
ORG = [
    "Northwind Bank",
    "Velta Motors",
    "Kestrel Airways",
    "the Ministry of Trade",
    "Orbis Labs",
    "Harbor Union",
    "Solano FC",
    "Tarn Energy",
    "Quill Press",
    "Meridian Group",
]
LOC = [
    "Valdora",
    "Port Ellis",
    "Kaskar",
    "New Hollin",
    "Bremmark",
    "Lake Suvi",
    "Ostrava Bay",
    "Calder",
    "Ruvena",
    "Tessaly",
]
MISC = ["Valdoran", "Kaskari", "Olympic", "Euro Cup", "Bremmish", "Nobel", "Tessalian", "World Series"]

# Templates: words, with {PER}/{ORG}/{LOC}/{MISC} slots.
TEMPLATES = [
    "{PER} said on Monday that {ORG} would open an office in {LOC} .",
    "{ORG} shares rose 3 percent in {LOC} trading .",
    "The {MISC} delegation met {PER} in {LOC} .",
    "{PER} , chief executive of {ORG} , resigned .",
    "{LOC} beat {LOC} 2-1 in the {MISC} final .",
    "Police in {LOC} arrested two men , {PER} told reporters .",
    "{ORG} and {ORG} agreed to merge , the companies said .",
    "{PER} won the {MISC} prize for her work in {LOC} .",
    "Talks between {LOC} and {ORG} ended without a deal .",
    "{PER} will visit {LOC} next week , {ORG} said .",
    "Oil prices fell on Tuesday .",
    "The {MISC} team arrived in {LOC} on Friday .",
    "{PER} {PER} and {PER} signed the letter .",
]
POS = {
    ",": ",",
    ".": ".",
    "the": "DT",
    "The": "DT",
    "in": "IN",
    "of": "IN",
    "on": "IN",
    "for": "IN",
    "and": "CC",
    "said": "VBD",
    "would": "MD",
    "will": "MD",
    "an": "DT",
    "her": "PRP$",
    "two": "CD",
    "3": "CD",
    "2-1": "CD",
    "a": "DT",
}


def _tag_entity(words: list[str], etype: str, touching: bool) -> list[tuple[str, str, str, str]]:
    rows = []
    for i, w in enumerate(words):
        pos = "DT" if w == "the" else "NNP"
        ner = ("B-" if i == 0 and touching else "I-") + etype
        chunk = "I-NP"
        rows.append((w, pos, chunk, ner))
    return rows


def sentence(rng: random.Random) -> list[tuple[str, str, str, str]]:
    pools = {"PER": PER, "ORG": ORG, "LOC": LOC, "MISC": MISC}
    rows: list[tuple[str, str, str, str]] = []
    last_type = None
    for piece in rng.choice(TEMPLATES).split():
        if piece.startswith("{"):
            etype = piece.strip("{}")
            rows += _tag_entity(rng.choice(pools[etype]).split(), etype, touching=last_type == etype)
            last_type = etype
        else:
            pos = POS.get(piece, "NN" if piece.islower() else "NNP")
            chunk = (
                "I-NP"
                if pos in ("NN", "NNP", "DT", "CD", "PRP$")
                else ("O" if pos in (",", ".") else "I-VP" if pos.startswith(("VB", "MD")) else "I-PP")
            )
            rows.append((piece, pos, chunk, "O"))
            last_type = None
    return rows


def write_corpus(out_dir: str | Path, seed: int = 0, sizes=(("train", 600), ("valid", 120), ("test", 120))) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name, n in sizes:
        lines = []
        for i in range(n):
            if i % 8 == 0:  # a new document every 8 sentences
                lines += ["-DOCSTART- -X- -X- O", ""]
            lines += [" ".join(row) for row in sentence(rng)] + [""]
        (out_dir / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
