"""``nerforge verify``: score a split with every CPU path an export can run and record which are safe to use."""

from __future__ import annotations

import argparse
import json
import sys

from nerforge.cli.common import (
    BadInput,
    Timer,
    add_data_options,
    add_model_options,
    add_quiet,
    data_from_args,
    local_model_folder,
    make_parser,
    run,
    windows_from_args,
)

DESCRIPTION = """Score a split (default: validation) with each way this CPU can run the export (torch fp32;
torch bf16 where the CPU has native bf16; the ONNX fp32 and int8 graphs where nerforge onnx wrote them;
the static int8 package where nerforge quantize built one for this CPU),
time each, and write MODEL/backends.json: F1, its change from fp32 in points, words per second and a
sha256 of the files each path ran. --backend auto (the default of predict, score, report, audit and
demo) then runs the fastest recorded path whose F1 is within 0.3 points of fp32's and whose files are
unchanged; bf16 only on a CPU with native bf16, and plain torch fp32 when there is no record."""

EXAMPLES = [
    "nerforge verify --model outputs/quickstart/model --data-dir bundled:sample",
    "nerforge onnx --model outputs/minilm-cpu/model && nerforge verify --model outputs/minilm-cpu/model "
    "--data-dir data/conll2003",
]


def build_parser(prog: str = "nerforge verify") -> argparse.ArgumentParser:
    from nerforge.backends import PATHS

    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    add_model_options(p, backend=False)
    add_data_options(p, split=False)
    p.add_argument("--split", default="validation", help="the split to score (not the test set you report)")
    p.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=None,
        help="the paths to run (default: all this machine can; torch fp32 always, as the reference)",
    )
    p.add_argument("--no-write", action="store_true", help="print the record, do not write MODEL/backends.json")
    add_quiet(p)
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge verify") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from transformers.utils import logging as hf_logging

        from nerforge.atomic import write_json_atomic
        from nerforge.backends import MAX_F1_DELTA, RECORD_FILE, resolve, verify_paths
        from nerforge.scoring import load_split

        hf_logging.disable_progress_bar()
        timer = Timer()
        export = local_model_folder(args.model, "verify writes into the export")
        if args.device not in (None, "cpu"):
            raise BadInput(f"verify measures CPU paths; drop --device {args.device}")
        split = load_split(args.split, data_from_args(args))

        def said(name, entry):
            if not args.quiet:
                print(
                    f"{name:>10}: F1 {100 * entry['f1']:.2f} ({entry['f1_delta']:+.2f}), "
                    f"{entry['words_per_s']:.0f} words/s",
                    file=sys.stderr,
                )

        record = verify_paths(
            str(export), split, windows_from_args(args), paths=args.paths and tuple(args.paths), on_path=said
        )
        record["split"] = args.split
        record["data"] = args.data_dir or args.dataset_path
        for name, why in record["not_run"].items():
            print(f"{name:>10}: not run ({why})", file=sys.stderr)
        text = json.dumps(record, indent=2)
        if args.no_write:
            print(text)
            return
        write_json_atomic(export / RECORD_FILE, record)
        choice = resolve(str(export), "auto")
        print(f"wrote {export / RECORD_FILE} in {timer}; paths within {MAX_F1_DELTA} F1 of fp32 may be chosen")
        print(choice.reason)

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
