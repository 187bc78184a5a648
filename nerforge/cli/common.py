"""What every ``nerforge`` command shares: exit statuses, the help format, the options that choose a model
and its windows, the data options, progress bars, logging and error handling.

Conventions (a test walks every parser and holds them): long options are kebab-case (a snake_case
spelling of a training field is a hidden alias); one name per concept in every command (a model or
export is always ``--model``, windows are ``--max-length``/``--stride``/``--context-size``/
``--pack-length``/``--batch-size``, metrics files ``--metrics-json``, the Hub ``--hub-*``); every
command's ``--help`` shows defaults and ends with examples.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nerforge.backends import BACKENDS, load_predictor
from nerforge.config import ConfigError
from nerforge.errors import CheckpointError, ExportError, RunError
from nerforge.features import WindowSettings
from nerforge.predictor import Predictor, describe_line, export_windows

EXIT_OK = 0
EXIT_NOT_WRITTEN = 1  # could not write, push or checkpoint; earlier output intact
EXIT_BAD_INPUT = 2  # bad input, configuration or a busy folder; one line names it
EXIT_STOPPED = 3  # stopped by a signal after writing a checkpoint (training)

EXIT_STATUS = {
    EXIT_OK: "done",
    EXIT_NOT_WRITTEN: "could not write, push or checkpoint (earlier output intact; rerun the same command)",
    EXIT_BAD_INPUT: "bad input, configuration or a busy folder (one line names the file, line or setting)",
    EXIT_STOPPED: "stopped by a signal after writing a checkpoint (rerun with --resume-from-checkpoint latest)",
}
EXIT_STATUS_TEXT = "exit status: " + "; ".join(f"{code} {text}" for code, text in EXIT_STATUS.items())


class OutputError(Exception):
    """A command's output could not be written (exit status 1)."""


class BadInput(ValueError):
    """Bad arguments found after parsing (exit status 2)."""


def local_model_folder(model: str, why: str) -> Path:
    """``model`` as a local model folder (one with config.json), for the commands that write into it; else
    a BadInput saying ``why`` it must be local and, for what looks like a Hub id, how to get a local copy."""
    folder = Path(model)
    if (folder / "config.json").is_file():
        return folder
    hint = ""
    if not folder.exists() and model.count("/") == 1 and not model.startswith((".", "/")):
        hint = f" (a Hub model? download it first: hf download {model} --local-dir DIR, then --model DIR)"
    raise BadInput(f"{model}: not a local model folder (no config.json); {why}{hint}")


# ---------------------------------------------------------------------------------------------- help


def shown_option_strings(action: argparse.Action) -> list[str]:
    """The spellings --help shows: not the hidden aliases (:func:`add_alias`), and no snake_case one
    where a kebab-case one exists."""
    hidden = getattr(action, "hidden_aliases", set())
    strings = [o for o in action.option_strings if o not in hidden]
    return [o for o in strings if "_" not in o] or strings


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, descriptions and examples kept as written, aliases hidden."""

    def _format_action_invocation(self, action):
        shown = shown_option_strings(action)
        if shown == action.option_strings:
            return super()._format_action_invocation(action)
        copy = argparse.Action(shown, action.dest, nargs=action.nargs, metavar=action.metavar)
        copy.option_strings = shown
        return super()._format_action_invocation(copy)

    def _get_help_string(self, action):
        # A switch's default says nothing ("--no-calibrate (default: False)"); None means "not given".
        if isinstance(action, argparse._StoreConstAction) or action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def make_parser(prog: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A command's parser: its description, then options with defaults, then examples and exit statuses."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n" + EXIT_STATUS_TEXT
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter, allow_abbrev=False
    )


def add_alias(parser: argparse.ArgumentParser, dest: str, alias: str) -> None:
    """An extra spelling of an existing option (an older name, or the config's snake_case one), accepted
    but not shown by --help."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            action.option_strings.append(alias)
            action.hidden_aliases = getattr(action, "hidden_aliases", set()) | {alias}
            parser._option_string_actions[alias] = action
            return
    raise KeyError(dest)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")


# ---------------------------------------------------------------------------------------------- model options


def add_model_options(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """--model and the windows it is run with (each defaulting to the export's own), device, backend."""
    p.add_argument(
        "--model", required=True, help="export folder (OUTPUT_DIR/model) or Hub id of a token-classification model"
    )
    w = p.add_argument_group("windows (default: the export's training_config.yaml, else the model's)")
    w.add_argument(
        "--max-length", type=int, default=None, metavar="N", help="word pieces per window, specials included"
    )
    w.add_argument(
        "--stride", type=int, default=None, metavar="N", help="pieces of context kept when a sentence is cut"
    )
    w.add_argument(
        "--context-size",
        type=int,
        default=None,
        metavar="N",
        help="pieces of document context on each side (CoNLL: -DOCSTART- groups; text: paragraphs)",
    )
    w.add_argument("--pack-length", type=int, default=None, metavar="N", help="label sentences together up to N pieces")
    w.add_argument("--batch-size", type=int, default=None, metavar="N", help="windows per forward pass")
    add_alias(p, "context_size", "--document-context")  # its name before 0.2
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    if backend:
        p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (torch backend)")
        p.add_argument(
            "--compile",
            action="store_true",
            help="torch.compile the model (torch backend): faster on large inputs, tens of seconds to start",
        )
        p.add_argument(
            "--backend",
            choices=BACKENDS,
            default="auto",
            help="what runs the model: torch, onnx (the export's onnx/model.onnx), onnx-int8 "
            "(onnx/model_quantized.onnx, written by nerforge onnx) or torch-int8 (pt2/model_int8.pt2, "
            "built by nerforge quantize); auto: the fastest path whose F1 "
            "nerforge verify checked for this export (its backends.json), else torch fp32",
        )


def windows_from_args(args: argparse.Namespace) -> WindowSettings:
    """The export's windows with the ones given on the command line instead."""
    return export_windows(args.model).override(
        max_length=args.max_length,
        stride=args.stride,
        context_size=args.context_size,
        pack_length=args.pack_length,
        batch_size=args.batch_size,
    )


def predictor_from_args(args: argparse.Namespace, progress: Progress | None = None) -> Predictor:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    predictor = load_predictor(
        args.model,
        getattr(args, "backend", "auto"),
        windows_from_args(args),
        device=args.device,
        bf16=getattr(args, "bf16", False),
        compile=getattr(args, "compile", False),
    )
    if progress is not None:
        predictor.on_batch = progress.update
    if predictor.choice is not None and getattr(args, "backend", "auto") == "auto":
        print(predictor.choice.reason, file=sys.stderr)
    print(describe_line(predictor), file=sys.stderr)
    return predictor


# ---------------------------------------------------------------------------------------------- data options


def add_data_options(p: argparse.ArgumentParser, split: bool = True) -> None:
    """Where the gold data comes from (the names of the training config's data fields)."""
    g = p.add_argument_group("data (default: the export's training_config.yaml, else CoNLL-2003's layout)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="folder with raw CoNLL files (train/valid/test); bundled:sample for the sample")
    src.add_argument(
        "--dataset-path", help="prepared dataset: a nerforge data build folder, save_to_disk folder or Hub id"
    )
    if split:
        g.add_argument("--split", default="test", help="the split to use")
    for name, example in (("train", "wnut17train.conll"), ("validation", "emerging.dev.conll"), ("test", None)):
        g.add_argument(
            f"--{name}-file",
            default=None,
            help=f"{name} file: a name in --data-dir or a path" + (f" (e.g. {example})" if example else ""),
        )
    g.add_argument("--tagging-scheme", choices=["iob2", "iob1"], default=None, help="gold tags of --data-dir")
    g.add_argument("--columns", nargs="+", default=None, help="column layout of --data-dir files, e.g. tokens ner_tags")
    g.add_argument("--cache-dir", default=None, help="datasets cache folder")


def data_from_args(args: argparse.Namespace):
    from nerforge.scoring import data_settings

    keys = ("data_dir", "dataset_path", "cache_dir", "tagging_scheme", "columns")
    keys += ("train_file", "validation_file", "test_file")
    return data_settings(args.model, **{k: getattr(args, k) for k in keys})


# ---------------------------------------------------------------------------------------------- output


def write_text(path, text: str, encoding: str = "utf-8") -> None:
    """Write a command's output file through a temporary file; an OSError is an OutputError (exit 1)."""
    from nerforge.atomic import atomic_write_text

    try:
        atomic_write_text(path, text, encoding=encoding)
    except OSError as e:
        raise OutputError(f"could not write {path}: {e}") from e


class Progress:
    """A progress bar on stderr, only when stderr is a terminal and --quiet is not given. ``update`` takes
    (done, total), as ``Predictor.on_batch`` gives it; a new total or a restart starts a new bar."""

    def __init__(self, desc: str, quiet: bool = False, unit: str = "window"):
        self.enabled = not quiet and sys.stderr.isatty()
        self.desc, self.unit, self.bar = desc, unit, None

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.bar.total != total or done < self.bar.n:
            self.close()
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.start:.1f} s"


# ---------------------------------------------------------------------------------------------- running


class _Console(logging.Handler):
    """INFO to stdout as it is, warnings and errors to stderr as ``warning: ...``/``error: ...``; the
    streams are looked up when a record is written (tests and callers may swap them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                print(f"{record.levelname.lower()}: {msg}", file=sys.stderr, flush=True)
            else:
                print(msg, file=sys.stdout, flush=True)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


# Warnings of other libraries that tell our users nothing they can act on, kept off the console (their
# errors still show): with the int8 extra installed, transformers imports torchao whenever it loads a
# model, and torchao warns that its CUDA-only kernel libraries do not load on a CPU build of torch (four
# lines on stderr before every command's output), and torch's pytree about torchao's enums.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_transformers_bars() -> None:
    """transformers' own progress bars off for this process: during training a "Writing model shards" bar
    at every checkpoint and a "Loading weights" bar at every reload broke into the run's own bar and log
    lines. Downloads from the Hub keep their bars (huggingface_hub's, not these). Needs transformers'
    tqdm hook; without it nothing changes."""
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is not None:
        set_hook(lambda factory, args, kwargs: factory(*args, **{**kwargs, "disable": True}))


def show_logs(level: int = logging.INFO) -> None:
    """What the library says through the ``nerforge`` logger, shown on the console (once); the
    :data:`QUIET_LOGGERS` set to errors only."""
    log = logging.getLogger("nerforge")
    if not any(isinstance(h, _Console) for h in log.handlers):
        log.addHandler(_Console())
    log.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def exit_status(error: BaseException) -> int | None:
    """The exit status of an error a command reports in one line, or None for an unexpected one."""
    from conll2003_loader.__main__ import PushFailed
    from nerforge.hub import IncompleteExportError, PushError

    if isinstance(error, IncompleteExportError):  # a folder that is not an export: bad input
        return EXIT_BAD_INPUT
    if isinstance(error, (OutputError, ExportError, PushError, PushFailed, CheckpointError)):
        return EXIT_NOT_WRITTEN
    if isinstance(error, (ConfigError, RunError, ValueError, OSError)):  # ConllFormatError is a ValueError
        return EXIT_BAD_INPUT
    return None


def one_line(text) -> str:
    return " ".join(str(text).split())


def run(body: Callable[[], int | None], announce: bool = True) -> int:
    """Run a command's body: its errors become one ``error:`` line (unless ``announce`` is False: another
    process of the same run says it) and the exit status of the table."""
    show_logs()
    try:
        return body() or EXIT_OK
    except Exception as e:  # noqa: BLE001 - mapped below; anything unexpected is re-raised
        code = exit_status(e)
        if code is None:
            raise
        if announce:
            print(f"error: {one_line(e)}", file=sys.stderr)
        return code
