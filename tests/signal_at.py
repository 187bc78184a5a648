"""Test hook: run the training loop (train_accelerate.py's) and send it a real signal at a chosen step, as a preemption would.

    NERFORGE_SIGNAL_AT=6:TERM[:RANK] python tests/signal_at.py [train_accelerate.py arguments]

The process of rank RANK (every rank when omitted) sends itself the signal after the backward pass of
optimizer step 6. With NERFORGE_SIGNAL_AGAIN=1 it sends the same signal again once the checkpoint that
follows has written accelerate's state (before trainer_state.json, the manifest and the rename), after
the launcher-forwarding window: a second request, which must abort at once. With NERFORGE_BATCH_LOG=DIR
each process appends the example ids of every training batch it is handed to DIR/rank-R.jsonl.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import accelerate  # noqa: E402

import nerforge.training as train_accelerate  # noqa: E402  (the loop the script runs)
from nerforge.cli.train import main  # noqa: E402
from nerforge.preemption import REPEAT_WINDOW_S  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))
live: list = []  # the run's TrainState


class WatchedState(train_accelerate.TrainState):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        live.append(self)


train_accelerate.TrainState = WatchedState

if os.environ.get("NERFORGE_SIGNAL_AT"):
    at, name, *rank = os.environ["NERFORGE_SIGNAL_AT"].split(":")
    AT, SIG = int(at), getattr(signal, f"SIG{name}")
    if not rank or int(rank[0]) == RANK:
        backward = accelerate.Accelerator.backward

        def backward_then_maybe_signal(self, loss, **kwargs):
            backward(self, loss, **kwargs)
            if live[-1].global_step + 1 == AT and self.sync_gradients:
                os.kill(os.getpid(), SIG)

        accelerate.Accelerator.backward = backward_then_maybe_signal

        if os.environ.get("NERFORGE_SIGNAL_AGAIN"):
            save_state = accelerate.Accelerator.save_state

            def save_state_then_signal_again(self, output_dir=None, **kwargs):
                save_state(self, output_dir, **kwargs)
                if Path(output_dir).name == f".tmp-step-{AT:06d}":
                    time.sleep(REPEAT_WINDOW_S + 0.5)
                    os.kill(os.getpid(), SIG)
                    time.sleep(5)  # the handler exits the process before this ends

            accelerate.Accelerator.save_state = save_state_then_signal_again

if os.environ.get("NERFORGE_BATCH_LOG"):
    get_dataloaders = train_accelerate.get_dataloaders
    log_file = Path(os.environ["NERFORGE_BATCH_LOG"]) / f"rank-{RANK}.jsonl"

    def logged_dataloaders(*args, **kwargs):
        n, sampler, train_dl, eval_dls = get_dataloaders(*args, **kwargs)
        collate = train_dl.collate_fn

        def collate_and_log(rows):
            with open(log_file, "a") as f:
                f.write(json.dumps(sorted(int(r["example_id"]) for r in rows)) + "\n")
            return collate(rows)

        train_dl.collate_fn = collate_and_log
        return n, sampler, train_dl, eval_dls

    train_accelerate.get_dataloaders = logged_dataloaders

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
