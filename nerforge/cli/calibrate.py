"""``nerforge calibrate``: fit one temperature on validation and fold it into an export's classifier."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerforge.cli.common import (
    Progress,
    Timer,
    add_data_options,
    add_quiet,
    data_from_args,
    make_parser,
    run,
)

DESCRIPTION = """Calibrate an export's confidence: one temperature fitted on the validation words (NLL) and
folded into the classifier, so every consumer (pipeline("ner") from the Hub too) gets calibrated scores
with no custom code; tags and F1 do not change. The export is rewritten whole (weights, metrics.json,
card, reliability diagram; onnx/ made again for the new weights; pt2/, the int8 package, left out: rebuild
it with nerforge quantize). Training does this at its end unless --no-calibrate."""

EXAMPLES = [
    "nerforge calibrate --model outputs/quickstart/model --data-dir bundled:sample",
    "nerforge calibrate --model outputs/bert-large-cased/model --data-dir data/conll2003",
]


def build_parser(prog: str = "nerforge calibrate") -> argparse.ArgumentParser:
    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    p.add_argument("--model", required=True, help="an export folder written by training (OUTPUT_DIR/model)")
    add_data_options(p, split=False)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_quiet(p)
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge calibrate") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from transformers.utils import logging as hf_logging

        from conll2003_loader import load_splits
        from nerforge.backends import RECORD_FILE
        from nerforge.calibration import calibrate_model, summary_line
        from nerforge.export import update_export
        from nerforge.predictor import Predictor
        from nerforge.pt2_runtime import PT2_DIR

        hf_logging.disable_progress_bar()
        timer, progress = Timer(), Progress("calibrating", args.quiet)
        export = Path(args.model)
        for name in ("training_config.yaml", "metrics.json", "config.json"):
            if not (export / name).is_file():
                raise ValueError(f"{export}: not an export written by nerforge training (no {name})")
        splits = load_splits(**data_from_args(args).loader_kwargs())
        if "validation" not in splits:
            raise ValueError(f"no validation split to fit the temperature on (splits: {', '.join(splits)})")
        predictor = Predictor.from_pretrained(export, device=args.device)
        predictor.on_batch = progress.update
        calibration = calibrate_model(predictor, {k: splits[k] for k in ("validation", "test") if k in splits})
        progress.close()
        metrics = json.loads((export / "metrics.json").read_text(encoding="utf-8"))
        metrics["calibration"] = calibration
        had_package = (export / PT2_DIR).is_dir()
        update_export(export, predictor.model, metrics)
        print(f"calibrated {export}: {summary_line(calibration)} ({timer})")
        if (export / RECORD_FILE).is_file():
            print(f"{export / RECORD_FILE} timed the old weights; rerun nerforge verify --model {export}")
        if had_package and not (export / PT2_DIR).is_dir():
            print(
                f"{export / PT2_DIR} removed: the int8 package was built from the old weights; "
                f"rebuild it with nerforge quantize --model {export}"
            )

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
