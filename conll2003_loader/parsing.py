"""Pure CoNLL column-file parsing: tag sets, IOB conversion and a strict reader (no `datasets` import).

Decisions (see also the package docstring):
- Columns are split on ASCII space/tab only (``[ \\t]+`` when ``separator`` is None), never on other
  Unicode whitespace: U+00A0, U+2028, U+200B, U+FE0F ... stay inside tokens, a token made only of such
  characters is a token. Lines are split on ``\\n`` only (a trailing ``\\r`` is dropped), not on the
  other separators ``str.splitlines()`` knows.
- Input tags may be IOB1 or IOB2: ``I-X`` after ``O`` or another type starts an entity (valid IOB1),
  so "B-Y I-X" is not an error; conversion to IOB2 is idempotent on IOB2 input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
# Penn Treebank tags as in the former HF `conll2003` dataset (same order, so ids line up); a superset of
# the 45 tags found in eng.train/testa/testb ('#' and '``' do not occur there).
POS_TAGS = (
    '"',
    "''",
    "#",
    "$",
    "(",
    ")",
    ",",
    ".",
    ":",
    "``",
    "CC",
    "CD",
    "DT",
    "EX",
    "FW",
    "IN",
    "JJ",
    "JJR",
    "JJS",
    "LS",
    "MD",
    "NN",
    "NNP",
    "NNPS",
    "NNS",
    "NN|SYM",
    "PDT",
    "POS",
    "PRP",
    "PRP$",
    "RB",
    "RBR",
    "RBS",
    "RP",
    "SYM",
    "TO",
    "UH",
    "VB",
    "VBD",
    "VBG",
    "VBN",
    "VBP",
    "VBZ",
    "WDT",
    "WP",
    "WP$",
    "WRB",
)
# Chunk types found in the three files (ADJP ADVP CONJP INTJ LST NP PP PRT SBAR VP) plus UCP, each with
# B- and I- so that both IOB1 and IOB2 output fit; same order as the former HF dataset.
CHUNK_TAGS = ("O",) + tuple(
    f"{p}-{t}" for t in ("ADJP", "ADVP", "CONJP", "INTJ", "LST", "NP", "PP", "PRT", "SBAR", "UCP", "VP") for p in "BI"
)
TAG_COLUMNS = ("pos_tags", "chunk_tags", "ner_tags")
IOB_COLUMNS = ("chunk_tags", "ner_tags")
CONLL2003_COLUMNS = ("tokens", "pos_tags", "chunk_tags", "ner_tags")
IGNORED_COLUMN = "_"
DOCSTART = "-DOCSTART-"

_IOB_TAG = re.compile(r"(?:O|[BI]-\S+)\Z")
_FIELD_SEP = re.compile(r"[ \t]+")
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ConllFormatError(ValueError):
    """Bad CoNLL input; ``path`` and ``line`` (1-based, None when not about one line) say where."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


class Sentence(NamedTuple):
    document_index: int
    sentence_index: int
    tokens: list
    tags: dict  # column name -> list of tags, as in the file
    line: int  # line number of the first token


def is_iob_tag(tag: str) -> bool:
    """True for ``O``, ``B-X`` and ``I-X`` (X non-empty, no whitespace)."""
    return _IOB_TAG.match(tag) is not None


def iob1_to_iob2(tags: Sequence[str]) -> list:
    """Turn every ``I-X`` that does not continue an ``X`` entity into ``B-X``; IOB2 input is unchanged."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def iob2_to_iob1(tags: Sequence[str]) -> list:
    """IOB2 (or IOB1) tags in IOB1: an entity starts with ``I-X``, and with ``B-X`` only where it directly
    follows another ``X`` entity (the original CoNLL-2003 files' scheme)."""
    out, prev = [], "O"
    for tag in iob1_to_iob2(tags):
        if tag.startswith("B-") and (prev == "O" or prev[2:] != tag[2:]):
            out.append("I-" + tag[2:])
        else:
            out.append(tag)
        prev = tag
    return out


def infer_label_names(tags) -> list:
    """``O`` first, then the entity types sorted, each as ``B-X``, ``I-X``."""
    types = sorted({t[2:] for t in tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in "BI"]


def _shown(line: str, limit: int = 80) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _is_docstart(stripped: str, separator: str | None) -> bool:
    """Whether a line (stripped of spaces/tabs) is a ``-DOCSTART-`` line: its first field, split on
    spaces/tabs (as in the CoNLL-2003 files, whatever the separator) or by ``separator``, is -DOCSTART-."""
    # The `separator` split is a fix: before, a "-DOCSTART-|-X-|O" line read with separator="|" was
    # taken for a token line (its "-X-" then failed an IOB column, or the line became a sentence).
    return stripped.startswith(DOCSTART) and (
        _FIELD_SEP.split(stripped, 1)[0] == DOCSTART
        or (separator is not None and stripped.split(separator, 1)[0] == DOCSTART)
    )


def read_conll(
    path,
    columns: Sequence[str] = CONLL2003_COLUMNS,
    separator: str | None = None,
    encoding: str = "utf-8",
    label_names: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[Sentence]:
    """Yield the sentences of a CoNLL column file, strictly (see ConllFormatError).

    ``columns`` names each column (``tokens`` required, ``_`` = ignored); ``separator`` None splits on
    runs of spaces/tabs; ``label_names`` maps a tag column to its fixed label set (unknown tag = error).
    ``-DOCSTART-`` lines start a new document and are never yielded.
    """
    path = Path(path)
    if "tokens" not in columns:
        raise ValueError(f"columns must include 'tokens', got {tuple(columns)}")
    if not path.exists():
        raise ConllFormatError(path, None, "file not found")
    if path.is_dir():
        raise ConllFormatError(path, None, "expected a file, found a directory")
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConllFormatError(path, line, f"bytes not valid {encoding}: {data[err.start : err.end]!r}") from None
    text = text.removeprefix("\ufeff")
    ncols, described = len(columns), " ".join(columns)
    wanted = [(i, c) for i, c in enumerate(columns) if c != IGNORED_COLUMN]
    names = [c for _, c in wanted]
    tok = names.index("tokens")
    allowed = {c: frozenset(v) for c, v in (label_names or {}).items()}
    seen_ok = {c: set() for c in names if c != "tokens"}  # tags already validated, to keep the loop fast
    bad_char = _BINARY.search(text)
    if bad_char:
        line = text.count("\n", 0, bad_char.start()) + 1
        shown = _shown(text.split("\n")[line - 1])
        raise ConllFormatError(path, line, f"binary data (control character or NUL byte): {shown}")
    doc = sent_in_doc = n_sentences = 0
    cur: list = []
    first_line = 0

    def flush():
        nonlocal cur, sent_in_doc, n_sentences
        if not cur:
            return None
        cols = list(zip(*cur))
        tags = {c: list(cols[k]) for k, c in enumerate(names) if k != tok}
        record = Sentence(doc, sent_in_doc, list(cols[tok]), tags, first_line)
        cur, sent_in_doc, n_sentences = [], sent_in_doc + 1, n_sentences + 1
        return record

    lines = text.split("\n")
    for lineno, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        stripped = line.strip(" \t")
        if not stripped:
            if (rec := flush()) is not None:
                yield rec
            continue
        if _is_docstart(stripped, separator):
            if (rec := flush()) is not None:
                yield rec
            if sent_in_doc:
                doc, sent_in_doc = doc + 1, 0
            continue
        if separator is not None:
            fields = line.split(separator)
        elif "\t" in stripped or "  " in stripped:
            fields = _FIELD_SEP.split(stripped)
        else:  # the common case, single spaces: str.split is ~3x faster than the regex, same result
            fields = stripped.split(" ")
        if len(fields) != ncols:
            raise ConllFormatError(
                path, lineno, f"expected {ncols} columns ({described}), found {len(fields)}: {_shown(line)}"
            )
        values = []
        for i, col in wanted:
            value = fields[i]
            if col == "tokens" and value or value in seen_ok.get(col, ()):
                values.append(value)
                continue
            if value == "":
                raise ConllFormatError(path, lineno, f"empty {col} column: {_shown(line)}")
            if col in IOB_COLUMNS and not is_iob_tag(value):
                raise ConllFormatError(path, lineno, f"{col}: {value!r} is not O, B-X or I-X")
            if col in allowed and value not in allowed[col]:
                raise ConllFormatError(
                    path, lineno, f"unknown {col} tag {value!r} (known: {', '.join(sorted(allowed[col]))})"
                )
            if col != "tokens":
                seen_ok[col].add(value)
            values.append(value)
        if not cur:
            first_line = lineno
        cur.append(values)
    if (rec := flush()) is not None:
        yield rec
    if n_sentences == 0:
        last = len(lines) - (lines[-1] == "")  # lines in the file (a final newline opens no new line)
        raise ConllFormatError(path, max(last, 1), "no sentences found (expected token lines separated by blank lines)")


def write_conll(sentences: Iterable[Sentence], columns: Sequence[str] = CONLL2003_COLUMNS, separator: str = " ") -> str:
    """The text of a CoNLL column file holding ``sentences`` (as `read_conll` yields them), which
    ``read_conll(path, columns, separator)`` reads back as the same sentences (``line`` aside).

    Layout as in the CoNLL-2003 files: every document opens with a ``-DOCSTART-`` line (``-X-`` in the
    middle columns, ``O`` in the last: ``-DOCSTART- -X- -X- O``) and a blank line, and every sentence is
    followed by a blank line; a new document starts wherever ``document_index`` changes. Columns are
    joined with ``separator``; an ignored column (``_``) is written as ``_``. When no value holds a
    space or a tab, ``separator=None`` reads the text back too.
    Raises ValueError for what would not read back: a sentence without tokens, a tag list of another
    length than the tokens, an empty value, a line break, a control character or the separator inside
    a value, a tag that is not ``O``/``B-X``/``I-X`` in an IOB column, a token line that would read as
    blank or as ``-DOCSTART-``.
    """
    if not separator:
        raise ValueError("separator must be a non-empty string")
    if "tokens" not in columns:
        raise ValueError(f"columns must include 'tokens', got {tuple(columns)}")
    ncols = len(columns)
    docstart = separator.join([DOCSTART] + ["-X-"] * (ncols - 2) + ["O"] * (ncols > 1))
    out: list[str] = []
    doc = None
    for sent in sentences:
        n = len(sent.tokens)
        if n == 0:
            raise ValueError(f"sentence {sent.sentence_index} of document {sent.document_index} has no tokens")
        values = []
        for col in columns:
            if col == IGNORED_COLUMN:
                values.append([IGNORED_COLUMN] * n)
                continue
            value = sent.tokens if col == "tokens" else sent.tags.get(col)
            if value is None or len(value) != n:
                got = "no" if value is None else len(value)
                raise ValueError(f"column {col}: {got} values for {n} tokens")
            values.append(value)
        if sent.document_index != doc:
            out += [docstart, ""]
            doc = sent.document_index
        for fields in zip(*values):
            line = separator.join(fields)
            for col, value in zip(columns, fields):
                if value == "" or "\n" in value or "\r" in value or _BINARY.search(value):
                    raise ValueError(f"column {col}: {value!r} cannot be written in a CoNLL line")
                if col in IOB_COLUMNS and not is_iob_tag(value):
                    raise ValueError(f"{col}: {value!r} is not O, B-X or I-X")
            stripped = line.strip(" \t")
            if line.split(separator) != list(fields) or not stripped or _is_docstart(stripped, separator):
                raise ValueError(f"{line!r} would not read back as the columns {list(fields)}")
            out.append(line)
        out.append("")
    return "".join(line + "\n" for line in out)
