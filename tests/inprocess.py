"""Test hook: run a command's ``main(argv)`` inside the test process, as a fresh process would see it.

A training run of the tests' 2-layer model takes one to three seconds; started as a subprocess it pays
six more importing torch, transformers, datasets, seqeval (and scikit-learn) and matplotlib. Tests whose
run is neither killed nor signalled nor fault-injected call the entry point here instead, and get back
what ``subprocess.run(..., capture_output=True, text=True)`` gives: ``returncode``, ``stdout``,
``stderr``.

What a fresh process would have and the test process may not, set for the run and put back after it:
the environment (``env`` on top of ``os.environ``), the working directory, umask 022, one torch thread
(the subprocess runs set ``OMP_NUM_THREADS=1``: the same kernels, so the same numbers), Python's default
warning filters with warnings printed to stderr (pytest would record them instead), accelerate's
process-wide state (a second ``Accelerator`` would inherit the first one's; the training loop clears it
itself for a one-process run, and it is cleared here too so that no test leans on that), the root and
``nerforge`` loggers (pytest's handlers on the root would take what logging's last resort prints to
stderr) and transformers' progress-bar hook. ``sys.stdout``/``sys.stderr`` are swapped for buffers, and
so are the streams of the logging handlers that write to the old ones (transformers', accelerate's). An
exception that escapes ``main`` prints its traceback to the captured stderr and gives exit status 1, as
Python does; ``SystemExit`` gives its code.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Completed:
    args: list
    returncode: int
    stdout: str
    stderr: str


def _stream_handlers(streams) -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [
        x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)
    ]
    return [
        h
        for lg in loggers
        for h in lg.handlers
        if type(h) is logging.StreamHandler and any(h.stream is s for s in streams)
    ]


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _fresh_process(env: dict | None, cwd: Path):
    import torch
    from accelerate.state import AcceleratorState, GradientState
    from transformers.utils import logging as hf_logging

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_umask = os.umask(0o022)
    saved_threads = torch.get_num_threads()
    nerforge_log, root = logging.getLogger("nerforge"), logging.getLogger()
    saved_logs = [(lg, list(lg.handlers), lg.level) for lg in (nerforge_log, root)]
    saved_hook = hf_logging.set_tqdm_hook(None)
    hf_logging.set_tqdm_hook(saved_hook)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        torch.set_num_threads(1)
        # a fresh root logger: no handlers (pytest's would record what a process prints to stderr
        # through logging's last resort), level WARNING
        root.handlers[:], root.level = [], logging.WARNING
        with warnings.catch_warnings():
            warnings.resetwarnings()  # what a fresh interpreter starts with (no -W, no PYTHONWARNINGS)
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _print_warning
            yield
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        hf_logging.set_tqdm_hook(saved_hook)
        for lg, handlers, level in saved_logs:
            lg.handlers[:], lg.level = handlers, level
        torch.set_num_threads(saved_threads)
        os.umask(saved_umask)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def run_main(main, argv, env: dict | None = None, cwd: Path = ROOT) -> Completed:
    """``main(argv)`` as ``python -m ... argv`` would run it (see the module's docstring)."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    old = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    handlers = _stream_handlers(old)
    previous = [h.stream for h in handlers]
    with _fresh_process(env, cwd):
        for h, s in zip(handlers, previous):
            h.setStream(err if s in (old[1], old[3]) else out)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as e:  # sys.exit("message"): printed, status 1
                    code = e.code
                    if code is not None and not isinstance(code, int):
                        print(code, file=sys.stderr)
                        code = 1
                except Exception:  # noqa: BLE001 - what the interpreter would print before exiting 1
                    traceback.print_exc(file=sys.stderr)
                    code = 1
        finally:
            for h, s in zip(handlers, previous):
                h.setStream(s)
    return Completed(argv, 0 if code is None else code, out.getvalue(), err.getvalue())


def run_training(*argv, env: dict | None = None, cwd: Path = ROOT) -> Completed:
    """``python train_accelerate.py argv``, in this process."""
    from nerforge.cli.train import main

    return run_main(lambda a: main(a, prog="train_accelerate.py"), argv, env=env, cwd=cwd)


def run_nerforge(*argv, env: dict | None = None, cwd: Path = ROOT) -> Completed:
    """``python -m nerforge argv`` (the ``nerforge`` command), in this process."""
    from nerforge.cli import main

    return run_main(main, argv, env=env, cwd=cwd)
