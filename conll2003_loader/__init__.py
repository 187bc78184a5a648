"""CoNLL-2003 English NER for Hugging Face `datasets` (and any CoNLL-style column corpus).

In-process: ``load_conll(data_dir=...)`` or ``Conll2003(config_name="default", data_dir=...)``;
``load_splits(...)`` is the one way from data settings (folder, per-split files, a prepared dataset) to
splits that training, scoring and the build command share.
For ``load_dataset("./conll2003_loader")``: run ``python -m conll2003_loader build --data-dir RAW_DIR``
first; it writes Parquet shards under ``data/`` and a dataset card ``README.md`` (both git-ignored).
Before that, ``load_dataset`` reads the committed ``NOT_BUILT.parquet`` placeholder, whose feature
metadata makes it fail with "...run `python -m conll2003_loader build --data-dir RAW_DIR`..."
(datasets 5.2 runs no loading scripts, so a data file is the only committed hook); once the card
exists its ``configs`` point at ``data/`` only and the placeholder is ignored (and never pushed).

NER tags are emitted in IOB2 by default (``tagging_scheme="iob1"`` keeps the file's tags); chunk
tags likewise. Columns are split on ASCII spaces/tabs only, never on other Unicode whitespace.
"""

from .builder import DEFAULT_URLS, SPLIT_FILE_NAMES, Conll2003, Conll2003Config, prepare
from .load import builder_options, load_conll, load_splits
from .parsing import (
    CHUNK_TAGS,
    NER_TAGS,
    POS_TAGS,
    ConllFormatError,
    infer_label_names,
    iob1_to_iob2,
    iob2_to_iob1,
    read_conll,
)

__all__ = [
    "Conll2003",
    "Conll2003Config",
    "ConllFormatError",
    "NER_TAGS",
    "POS_TAGS",
    "CHUNK_TAGS",
    "DEFAULT_URLS",
    "SPLIT_FILE_NAMES",
    "infer_label_names",
    "iob1_to_iob2",
    "iob2_to_iob1",
    "read_conll",
    "load_conll",
    "load_splits",
    "builder_options",
    "prepare",
]
