"""``nerforge onnx``: add verified ONNX graphs (fp32 and dynamic int8) to an export or model folder."""

from __future__ import annotations

import argparse
import sys

from nerforge.cli.common import Timer, add_quiet, local_model_folder, make_parser, run

DESCRIPTION = """Export a model folder to ONNX: MODEL/onnx/model.onnx (fp32) and, unless --no-int8,
MODEL/onnx/model_quantized.onnx (dynamic int8 weights), the layout ONNX Runtime, Optimum-style loaders
and transformers.js read, plus onnx/verification.json. Each graph is verified when written (fp32 logits
against torch's, int8 tags against fp32's) and the onnx/ folder is swapped in whole or not at all.
Run them with --backend onnx / onnx-int8 in predict, score and report. Needs the onnx extra."""

EXAMPLES = [
    "nerforge onnx --model outputs/quickstart/model",
    "nerforge onnx --model outputs/bert-large-cased/model --no-int8",
]


def build_parser(prog: str = "nerforge onnx") -> argparse.ArgumentParser:
    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    p.add_argument(
        "--model", required=True, help="a model folder: an export written by training, or any save_pretrained folder"
    )
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write and verify the dynamic int8 model_quantized.onnx (as training's export_onnx_int8)",
    )
    p.add_argument("--quantize", dest="int8", action="store_true", help=argparse.SUPPRESS)  # the name before 0.2
    add_quiet(p)
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge onnx") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from transformers.utils import logging as hf_logging

        from nerforge.export import add_onnx
        from nerforge.onnx_runtime import FP32_FILE, INT8_FILE, ONNX_DIR, require_onnx

        hf_logging.disable_progress_bar()
        timer = Timer()
        require_onnx()
        export = local_model_folder(args.model, "onnx/ is written into it")
        if not args.quiet and sys.stderr.isatty():  # a status line in place of a bar: one call does it all
            print(f"exporting {export} to ONNX{' (fp32 and int8)' if args.int8 else ''}...", file=sys.stderr)
        result = add_onnx(export, quantize_int8=args.int8)
        fp32 = result["fp32"]["max_abs_logit_diff_vs_torch"]
        line = f"wrote {export / ONNX_DIR}: {FP32_FILE} (max abs logit diff vs torch {fp32:.2g}"
        if "int8" in result:
            agree = 100 * result["int8"]["tag_agreement_vs_fp32"]
            line += f"), {INT8_FILE} (tags agree with fp32 on {agree:.2f}%"
        print(line + f" of {result['sample']['words']} sample words) in {timer}")

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
