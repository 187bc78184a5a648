"""``nerforge quantize``: build an export's static int8 package for this CPU (calibrated, compiled, checked)."""

from __future__ import annotations

import argparse
import sys
import warnings

from nerforge.cli.common import (
    BadInput,
    Timer,
    add_data_options,
    add_quiet,
    data_from_args,
    local_model_folder,
    make_parser,
    run,
)

DESCRIPTION = """Build MODEL/pt2/model_int8.pt2: the export's model with static int8 linear layers
(PyTorch 2 export quantization, scales calibrated on the first sentences of --split), compiled ahead of
time by AOTInductor for this CPU, so loading it takes a fraction of a second. The rest of the model runs
in bf16 where the CPU has native bf16, else fp32. The package is checked against fp32 on the sentences
after the calibration ones and swapped in whole or not at all; it runs only on a CPU with this one's
instructions and under this torch release, and is not pushed to the Hub. Then run nerforge verify:
--backend auto picks torch-int8 when it is the fastest path within 0.3 F1 of fp32. Needs the int8 extra
(torchao) to build, torch alone to run."""

EXAMPLES = [
    "nerforge quantize --model outputs/minilm-cpu/model --data-dir data/conll2003 && "
    "nerforge verify --model outputs/minilm-cpu/model --data-dir data/conll2003",
    "nerforge quantize --model outputs/quickstart/model --data-dir bundled:sample --calibration-sentences 100",
]


def build_parser(prog: str = "nerforge quantize") -> argparse.ArgumentParser:
    from nerforge.pt2_export import CALIBRATION_SENTENCES, CHECK_SENTENCES

    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    p.add_argument("--model", required=True, help="a local export folder (OUTPUT_DIR/model); the package goes into it")
    add_data_options(p, split=False)
    p.add_argument(
        "--split", default="train", help="the split whose first sentences calibrate and check (not the one you report)"
    )
    p.add_argument(
        "--calibration-sentences",
        type=int,
        default=CALIBRATION_SENTENCES,
        metavar="N",
        help="sentences whose windows set the int8 scales",
    )
    p.add_argument(
        "--check-sentences",
        type=int,
        default=CHECK_SENTENCES,
        metavar="N",
        help="the sentences after those, tagged by the package and by fp32 to check it",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the non-int8 rest in bf16 (default: where this CPU has native bf16)",
    )
    add_quiet(p)
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge quantize") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from transformers.utils import logging as hf_logging

        from nerforge.backends import cpu_flags, native_bf16
        from nerforge.pt2_export import build_int8, require_torchao
        from nerforge.pt2_runtime import INT8_FILE, PT2_DIR
        from nerforge.scoring import load_split, words_and_documents

        hf_logging.disable_progress_bar()
        timer = Timer()
        require_torchao()
        export = local_model_folder(args.model, "the package is built into it")
        if args.calibration_sentences < 1 or args.check_sentences < 0:
            raise BadInput("--calibration-sentences must be at least 1 and --check-sentences at least 0")
        flags = cpu_flags()
        bf16 = native_bf16(flags) if args.bf16 is None else args.bf16
        if bf16 and not native_bf16(flags):
            print(
                "warning: this CPU has no native bf16; the package's bf16 rest will be emulated (slow)", file=sys.stderr
            )
        split = load_split(args.split, data_from_args(args))
        words, docs = words_and_documents(split)
        n, m = args.calibration_sentences, args.check_sentences
        if len(words) <= n and m:
            raise BadInput(
                f"split {args.split!r} has {len(words)} sentences: too few for {n} calibration sentences and "
                f"{m} to check with (lower --calibration-sentences or --check-sentences)"
            )
        if not args.quiet:
            rest = "bf16" if bf16 else "fp32"
            print(
                f"quantizing {export} (static int8, {rest} rest) on {min(n, len(words))} {args.split} sentences, "
                "then compiling for this CPU (about a minute for MiniLM)...",
                file=sys.stderr,
            )
        with warnings.catch_warnings():  # inductor's int8 lowering copy-constructs a tensor: a UserWarning per layer
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            build = build_int8(
                export, (words[:n], docs[:n]), (words[n : n + m], docs[n : n + m]), bf16=bf16, flags=flags
            )
        check = build["check"]
        print(
            f"wrote {export / PT2_DIR / INT8_FILE} (int8, {build['rest']} rest; tags agree with fp32 on "
            f"{100 * check['tag_agreement_vs_fp32']:.2f}% of {check['words']} check words; loads in "
            f"{check['load_s']:.2f} s) in {timer}"
        )
        data = f"--data-dir {args.data_dir}" if args.data_dir else f"--dataset-path {args.dataset_path}"
        print(f"next: nerforge verify --model {export} {data} (then --backend auto may choose torch-int8)")

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
