"""Test hook: run the training loop (train_accelerate.py's) and SIGKILL it at a chosen point, as a crash or an OOM kill would.

    NERFORGE_KILL_AT=step:6 python tests/kill_at.py [train_accelerate.py arguments]

Points: ``step:N`` (after the backward pass of optimizer step N, before its optimizer step),
``save:N`` (after accelerate has written the step-N checkpoint's state, before trainer_state.json
and the rename), ``eval:N`` (when the evaluation at step N starts). The product has no kill points
of its own: this wrapper patches the functions it calls.
"""

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import accelerate  # noqa: E402

import nerforge.training as train_accelerate  # noqa: E402  (the loop the script runs)
from nerforge.cli.train import main  # noqa: E402

where, _, at = os.environ["NERFORGE_KILL_AT"].partition(":")
AT = int(at)
live: list = []  # the run's TrainState (the newest: a resumed run makes its own)


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class WatchedState(train_accelerate.TrainState):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        live.append(self)


train_accelerate.TrainState = WatchedState

if where == "step":
    backward = accelerate.Accelerator.backward

    def backward_then_maybe_kill(self, loss, **kwargs):
        backward(self, loss, **kwargs)
        if live[-1].global_step + 1 == AT:
            kill()

    accelerate.Accelerator.backward = backward_then_maybe_kill
elif where == "save":
    save_state = accelerate.Accelerator.save_state

    def save_state_then_maybe_kill(self, output_dir=None, **kwargs):
        save_state(self, output_dir, **kwargs)
        if Path(output_dir).name == f".tmp-step-{AT:06d}":
            kill()

    accelerate.Accelerator.save_state = save_state_then_maybe_kill
elif where == "eval":
    evaluate = train_accelerate.evaluate

    def maybe_kill_then_evaluate(*args, **kwargs):
        if live[-1].global_step == AT:
            kill()
        return evaluate(*args, **kwargs)

    train_accelerate.evaluate = maybe_kill_then_evaluate
else:
    raise SystemExit(f"unknown kill point {where!r}")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
