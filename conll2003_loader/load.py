"""From data settings to splits, one way for every caller (training, scoring, the build command).

:func:`builder_options` turns the settings a user gives (folder, per-split file names, columns, tag
names, tagging scheme) into :class:`~conll2003_loader.builder.Conll2003Config` arguments;
:func:`load_splits` returns the splits of raw files, of a ``save_to_disk`` folder, of a built folder or
of a Hub dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .builder import Conll2003, prepare


def builder_options(
    data_dir: str | None = None,
    *,
    tagging_scheme: str = "iob2",
    columns: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    **other,
) -> dict:
    """Keyword arguments of ``Conll2003(...)``. File names are resolved against ``data_dir`` (or the
    working folder without one) to absolute paths; given any of them, exactly those splits are read.
    ``other`` (``separator``, ``encoding``, ``urls``, ...) passes through."""
    options: dict = {"tagging_scheme": tagging_scheme, **other}
    if data_dir is not None:
        options["data_dir"] = str(Path(data_dir).resolve())
    if columns:
        options["columns"] = tuple(columns)
    if label_names:
        options["label_names"] = tuple(label_names)
    given = {"train": train_file, "validation": validation_file, "test": test_file}
    base = Path(data_dir) if data_dir is not None else Path.cwd()
    files = {split: str((base / name).resolve()) for split, name in given.items() if name}
    if files:
        options["split_files"] = files
    return options


def load_conll(data_dir: str | None = None, cache_dir: str | None = None, **config_kwargs):
    """Prepare and return the ``DatasetDict`` of raw files; ``config_kwargs`` go to Conll2003Config."""
    if data_dir is not None:
        data_dir = str(data_dir)
    builder = Conll2003(cache_dir=cache_dir, data_dir=data_dir, **config_kwargs)
    return prepare(builder)


def load_splits(*, dataset_path: str | None = None, cache_dir: str | None = None, **settings):
    """The ``DatasetDict`` of a prepared dataset (``dataset_path``: a ``save_to_disk`` folder, a folder
    built by ``python -m conll2003_loader build``, or a Hub id) or of raw CoNLL files (``settings``: the
    arguments of :func:`builder_options`; without ``data_dir`` or files, the raw release is downloaded)."""
    if dataset_path:
        from datasets import load_dataset, load_from_disk

        if (Path(dataset_path) / "dataset_dict.json").is_file():
            return load_from_disk(dataset_path)
        return load_dataset(dataset_path, cache_dir=cache_dir)
    return load_conll(cache_dir=cache_dir, **builder_options(**settings))
