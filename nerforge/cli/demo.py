"""``nerforge demo``: a local web page over a model (Gradio), or a Hugging Face Space folder for it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerforge.cli.common import add_model_options, make_parser, predictor_from_args, run

DESCRIPTION = """Start a local web page over a model: a text box, the entities highlighted by type with their
scores, a score threshold; paragraphs (blank-line separated) get document context when the model was
trained with it; an export's test scores, confusions and reliability diagram on a second tab. With
--space DIR, write a Hugging Face Space folder for a Hub model instead (app.py, requirements.txt pinned
to this environment, README.md with the Space metadata); nerforge push --space-dir uploads it. Needs the
demo extra: pip install 'nerforge[demo]'."""

EXAMPLES = [
    "nerforge demo --model outputs/quickstart/model",
    "nerforge demo --model dslim/bert-base-NER --port 7861",
    "nerforge demo --model your-name/bert-large-cased-conll2003 --space space/",
]


def build_parser(prog: str = "nerforge demo") -> argparse.ArgumentParser:
    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--example", default=None, help="text shown in the box at start (default: the export's)")
    p.add_argument("--space", default=None, metavar="DIR", help="write a Space folder for --model (a Hub id)")
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge demo") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        example = args.example
        local = Path(args.model).is_dir()
        if example is None and (Path(args.model) / "training_config.yaml").is_file():
            from nerforge.config import load_saved

            example = load_saved(Path(args.model) / "training_config.yaml").training.example_text
        if args.space:
            from nerforge.space import write_space

            out = write_space(args.space, args.model, example=example)
            print(f"{out}: app.py, requirements.txt, README.md (upload: nerforge push --space-dir {out} ...)")
            return
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise ValueError("nerforge demo needs gradio: pip install 'nerforge[demo]'") from None
        from nerforge.demo_app import build_app

        predictor = predictor_from_args(args)
        app = build_app(predictor, args.model, export=args.model if local else None, example=example)
        print(f"serving {args.model} on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr, flush=True)
        app.launch(server_name=args.host, server_port=args.port, quiet=True)

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
