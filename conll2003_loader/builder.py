"""`datasets` builder for CoNLL-2003 English NER and other CoNLL-style column corpora."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import datasets
import pyarrow as pa

from .parsing import (
    CHUNK_TAGS,
    CONLL2003_COLUMNS,
    IGNORED_COLUMN,
    IOB_COLUMNS,
    NER_TAGS,
    POS_TAGS,
    TAG_COLUMNS,
    ConllFormatError,
    infer_label_names,
    iob1_to_iob2,
    read_conll,
)

_RAW = "https://raw.githubusercontent.com/suryasumukh/conll-ner/18d3e43a09247adaa9ec088485a087d5ffa758a6/data"
DEFAULT_URLS = {"train": f"{_RAW}/eng.train", "validation": f"{_RAW}/eng.testa", "test": f"{_RAW}/eng.testb"}
DEFAULT_SHA256 = {
    "train": "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c",
    "validation": "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e",
    "test": "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6",
}
SPLIT_FILE_NAMES = {
    "train": ("eng.train", "train.txt"),
    "validation": ("eng.testa", "valid.txt"),
    "test": ("eng.testb", "test.txt"),
}
_KNOWN_COLUMNS = ("tokens",) + TAG_COLUMNS + (IGNORED_COLUMN,)
_BATCH = 2000

# datasets "extends this module for streaming" on every builder instantiation: it patches open(),
# os.path and a list of readers (scipy.io.loadmat among them) in the builder's module, importing each
# of those libraries to do so (~0.5 s for scipy alone, most of a warm load). Files are read by
# parsing.py with pathlib and downloads go through the download manager, so the patches would change
# nothing here; marking the module as patched skips them.
_patched_for_streaming = True


@dataclass
class Conll2003Config(datasets.BuilderConfig):
    """Options of the CoNLL builder (the raw-data folder comes in the standard ``data_dir``).

    Args:
        tagging_scheme: ``"iob2"`` (default: every entity/chunk starts with ``B-``) or ``"iob1"`` (as in the file).
        columns: name of each column: ``tokens``, ``pos_tags``, ``chunk_tags``, ``ner_tags`` or ``_`` (ignored).
        separator: column separator; None = any run of ASCII spaces/tabs.
        encoding: encoding of the files (bad bytes are an error, reported with their line).
        label_names: the NER label set. None: the fixed CoNLL-2003 list for the 4-column layout,
            else inferred from the train split (``O``, then ``B-X``, ``I-X`` per sorted type X).
        urls: split -> URL, downloaded (cached) when no ``data_dir`` is given.
        sha256: split -> expected sha256 of the download (None: checked only for the default URLs).
        split_files: split -> file name in ``data_dir``, or a path (with or without ``data_dir``); exactly
            these splits are read (None: the usual CoNLL-2003 names in ``data_dir``).
    """

    name: str = "default"
    tagging_scheme: str = "iob2"
    columns: Sequence[str] = CONLL2003_COLUMNS
    separator: Optional[str] = None
    encoding: str = "utf-8"
    label_names: Optional[Sequence[str]] = None
    urls: dict = field(default_factory=lambda: dict(DEFAULT_URLS))
    sha256: Optional[dict] = None
    split_files: Optional[dict] = None

    def __post_init__(self):
        super().__post_init__()
        self.columns = tuple(self.columns)
        self.label_names = tuple(self.label_names) if self.label_names is not None else None
        if self.tagging_scheme not in ("iob1", "iob2"):
            raise ValueError(f"tagging_scheme must be 'iob1' or 'iob2', got {self.tagging_scheme!r}")
        bad = [c for c in self.columns if c not in _KNOWN_COLUMNS]
        named = [c for c in self.columns if c != IGNORED_COLUMN]
        if bad or "tokens" not in self.columns or len(set(named)) != len(named):
            raise ValueError(f"columns must name 'tokens' once and use only {_KNOWN_COLUMNS}, got {self.columns}")
        if self.sha256 is None and self.urls == DEFAULT_URLS:
            self.sha256 = dict(DEFAULT_SHA256)


def prepare(builder: datasets.DatasetBuilder) -> datasets.DatasetDict:
    """download_and_prepare + as_dataset, re-raising a ConllFormatError hidden in a DatasetGenerationError."""
    try:
        builder.download_and_prepare()
    except datasets.exceptions.DatasetGenerationError as err:
        if isinstance(err.__cause__, ConllFormatError):
            raise err.__cause__ from None
        raise
    return builder.as_dataset()


class Conll2003(datasets.ArrowBasedBuilder):
    """CoNLL-2003 English NER (or any CoNLL column corpus) with document boundaries, IOB2 by default."""

    BUILDER_CONFIG_CLASS = Conll2003Config
    BUILDER_CONFIGS = [Conll2003Config(name="default")]
    DEFAULT_CONFIG_NAME = "default"

    def _ner_names(self) -> Optional[tuple]:
        if self.config.label_names is not None:
            return self.config.label_names
        return NER_TAGS if self.config.columns == CONLL2003_COLUMNS else None

    def _features(self, ner_names) -> datasets.Features:
        names = {"pos_tags": POS_TAGS, "chunk_tags": CHUNK_TAGS, "ner_tags": ner_names}
        feats = {
            "id": datasets.Value("string"),
            "document_id": datasets.Value("int32"),
            "sentence_index": datasets.Value("int32"),
            "tokens": datasets.List(datasets.Value("string")),
        }
        for col in TAG_COLUMNS:  # fixed order, whatever the file's column order
            if col in self.config.columns:
                feats[col] = datasets.List(datasets.ClassLabel(names=list(names[col])))
        return datasets.Features(feats)

    def _info(self):
        has_ner = "ner_tags" in self.config.columns
        ner = self._ner_names()
        return datasets.DatasetInfo(
            description="CoNLL-2003 style NER: one row per sentence, with document boundaries.",
            features=self._features(ner) if ner is not None or not has_ner else None,
        )

    def _split_files(self, dl_manager) -> dict:
        if self.config.data_dir is None and not self.config.split_files:
            files = dl_manager.download(dict(self.config.urls))
            for split, expected in (self.config.sha256 or {}).items():
                got = hashlib.sha256(Path(files[split]).read_bytes()).hexdigest()
                if got != expected:
                    raise ConllFormatError(self.config.urls[split], None, f"sha256 {got} != expected {expected}")
            return files
        data_dir = Path(self.config.data_dir or ".")
        if not data_dir.is_dir():
            raise ConllFormatError(data_dir, None, "data_dir is not a directory")
        files = {}
        wanted = self.config.split_files or SPLIT_FILE_NAMES
        for split, names in wanted.items():
            names = (names,) if isinstance(names, str) else tuple(names)
            found = [data_dir / n for n in names if (data_dir / n).exists()]
            if not found:
                raise ConllFormatError(
                    data_dir / names[0], None, f"missing {split} split file (accepted names: {', '.join(names)})"
                )
            if found[0].is_dir():
                raise ConllFormatError(found[0], None, "expected a file, found a directory")
            files[split] = str(found[0])
        return files

    def _label_sets(self, ner_names) -> dict:
        sets = {"pos_tags": POS_TAGS, "chunk_tags": CHUNK_TAGS}
        if ner_names is not None:
            sets["ner_tags"] = ner_names
        return {c: v for c, v in sets.items() if c in self.config.columns}

    def _read(self, path, ner_names):
        cfg = self.config
        return read_conll(path, cfg.columns, cfg.separator, cfg.encoding, self._label_sets(ner_names))

    def _split_generators(self, dl_manager):
        files = self._split_files(dl_manager)
        ner = self._ner_names()
        if ner is None and "ner_tags" in self.config.columns:
            if "train" not in files:
                raise ValueError("label_names must be given when there is no train split to infer them from")
            seen = {t for s in self._read(files["train"], None) for t in s.tags["ner_tags"]}
            ner = tuple(infer_label_names(seen))
            self.info.features = self._features(ner)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"path": path, "ner_names": ner})
            for split, path in files.items()
        ]

    def _generate_shards(self, path, ner_names):
        yield path

    def _generate_tables(self, path, ner_names):
        feats = self.info.features
        tag_cols = [c for c in TAG_COLUMNS if c in feats]
        ids = {c: {n: i for i, n in enumerate(feats[c].feature.names)} for c in tag_cols}
        iob2 = self.config.tagging_scheme == "iob2"
        batch = {k: [] for k in feats}
        n = batch_idx = 0
        for sent in self._read(path, ner_names):
            batch["id"].append(str(n))
            batch["document_id"].append(sent.document_index)
            batch["sentence_index"].append(sent.sentence_index)
            batch["tokens"].append(sent.tokens)
            for col in tag_cols:
                tags = sent.tags[col]
                if iob2 and col in IOB_COLUMNS:
                    tags = iob1_to_iob2(tags)
                try:
                    batch[col].append([ids[col][t] for t in tags])
                except KeyError as err:
                    raise ConllFormatError(
                        path,
                        sent.line,
                        f"{col}: {err.args[0]!r} (after {self.config.tagging_scheme.upper()} conversion) is not in the label names",
                    ) from None
            n += 1
            if n % _BATCH == 0:
                yield datasets.builder.Key(0, batch_idx), pa.table(batch, schema=feats.arrow_schema)
                batch, batch_idx = {k: [] for k in feats}, batch_idx + 1
        if batch["id"]:
            yield datasets.builder.Key(0, batch_idx), pa.table(batch, schema=feats.arrow_schema)
