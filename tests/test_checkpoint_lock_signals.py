"""The pieces behind resuming safely, in-process: checkpoint manifests, the output folder's lock and the
stop-signal handler (the end-to-end runs are in tests/test_reliability_preemption.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

from nerforge.checkpoint import CheckpointInvalid, find_checkpoint, verify, write_manifest
from nerforge.preemption import StopSignals
from nerforge.runlock import LockedError, RunLock


def make_checkpoint(folder, payload=b"weights" * 100):
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text('{"global_step": 1}')
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "sub").mkdir()
    (folder / "sub" / "x.bin").write_bytes(b"\x00\x01")
    return write_manifest(folder)


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    import hashlib

    manifest = make_checkpoint(tmp_path / "step-000001")
    assert sorted(manifest["files"]) == ["model.safetensors", "sub/x.bin", "trainer_state.json"]
    entry = manifest["files"]["model.safetensors"]
    assert entry == {"size": 700, "sha256": hashlib.sha256(b"weights" * 100).hexdigest()}
    assert json.loads((tmp_path / "step-000001" / "manifest.json").read_text()) == manifest
    verify(tmp_path / "step-000001")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.safetensors").write_bytes(b"weights" * 99), "700 (truncated?)"),
        (lambda d: (d / "model.safetensors").write_bytes(b"weightz" + b"weights" * 99), "sha256 differs"),
        (lambda d: (d / "sub" / "x.bin").unlink(), "missing (listed in manifest.json)"),
        (lambda d: (d / "manifest.json").write_text("{"), "unreadable manifest"),
        (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
        (lambda d: (d / "trainer_state.json").unlink(), "no trainer_state.json"),
    ],
)
def test_damaged_checkpoint_named_in_the_error(tmp_path, damage, message):
    ckpt = tmp_path / "step-000001"
    make_checkpoint(ckpt)
    damage(ckpt)
    with pytest.raises(CheckpointInvalid, match=re.escape(message)):
        verify(ckpt)


def test_latest_falls_back_past_damaged_checkpoints(tmp_path):
    for step in (2, 4, 6):
        make_checkpoint(tmp_path / f"step-{step:06d}")
    (tmp_path / "step-000006" / "sub" / "x.bin").write_bytes(b"\x00\x02")  # same size, other bytes
    (tmp_path / "step-000004" / "model.safetensors").write_bytes(b"")
    warned = []
    assert find_checkpoint(tmp_path, "latest", warn=warned.append) == tmp_path / "step-000002"
    assert [w.split(":")[0] for w in warned] == ["skipping checkpoint step-000006", "skipping checkpoint step-000004"]
    assert str(tmp_path / "step-000006" / "sub" / "x.bin") in warned[0]
    with pytest.raises(CheckpointInvalid, match="step-000004"):
        find_checkpoint(tmp_path, str(tmp_path / "step-000004"))


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    first = RunLock(tmp_path / "out")
    assert first.acquire() is None
    holder = json.loads((tmp_path / "out" / ".nerforge.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"]
    with pytest.raises(LockedError, match=rf"in use by another run \(host .*, pid {os.getpid()}, started "):
        RunLock(tmp_path / "out").acquire()  # another open file description: flock conflicts
    first.release()
    assert not (tmp_path / "out" / ".nerforge.lock").exists()
    second = RunLock(tmp_path / "out")
    assert second.acquire() is None  # a released lock is not stale: nothing to warn about
    second.release()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    code = f"from nerforge.runlock import RunLock; RunLock({str(tmp_path / 'out')!r}).acquire(); import os; os._exit(0)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)  # exits holding it, as a killed run would
    dead = json.loads((tmp_path / "out" / ".nerforge.lock").read_text())["pid"]
    lock = RunLock(tmp_path / "out")
    warning = lock.acquire()
    assert (
        warning.startswith(f"took over a stale lock on {tmp_path / 'out'} (left by host ") and f"pid {dead}" in warning
    )
    lock.release()


def test_first_signal_sets_the_flag_repeats_are_ignored_and_handlers_come_back():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals() as signals:
        assert signals.received is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)  # a launcher forwarding the same signal: not a second request
        assert signals.received == signal.SIGUSR1 and signals.name == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_second_different_signal_aborts_at_once():
    code = (
        "import os, signal, time\n"
        "from nerforge.preemption import StopSignals\n"
        "with StopSignals():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "print('not reached')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 128 + signal.SIGINT and "not reached" not in p.stdout
    assert "received SIGTERM: stopping after the optimizer step" in p.stderr
    assert "received SIGINT while stopping: aborting now" in p.stderr


def test_a_file_system_without_flock_runs_unguarded_with_a_warning(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = RunLock(tmp_path / "out")
    assert lock.acquire() == (
        f"cannot lock {tmp_path / 'out' / '.nerforge.lock'} (No locks available): nothing stops a second run on this folder"
    )
    lock.release()  # nothing held: nothing to do
