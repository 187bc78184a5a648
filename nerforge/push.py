"""Push a finished export folder to the Hugging Face Hub.

    python -m nerforge.push OUTPUT_DIR/model --hub_model_id user/name [--private]
        [--revision BRANCH] [--commit_message MESSAGE]

The token comes from HF_TOKEN or from `hf auth login`; it is never printed.
Exit status: 0 pushed (the commit URL is printed), 1 the push failed (one-line error;
the local folder is untouched, run the same command again), 2 bad arguments or the
folder is not a complete export.
"""

from __future__ import annotations

import argparse
import logging
import sys

from nerforge.export import DEFAULT_COMMIT_MESSAGE, IncompleteExportError, PushError, push_export


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nerforge.push",
        description="Upload an export folder (weights, tokenizer, README.md model card) to the Hub in one commit.",
    )
    parser.add_argument("export_dir", help="the export folder written by training, e.g. OUTPUT_DIR/model")
    parser.add_argument("--hub_model_id", "--hub-model-id", required=True, help="target repository, e.g. user/name")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    parser.add_argument("--commit_message", "--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument("--max_retries", type=int, default=3, help="retries for timeouts, 429 and 5xx")
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad arguments

    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(args.hub_model_id)
    except Exception as e:  # HFValidationError
        print(f"error: invalid --hub_model_id {args.hub_model_id!r}: {_one_line(e)}", file=sys.stderr)
        return 2
    if args.max_retries < 0:
        print("error: --max_retries must be >= 0", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        url = push_export(
            args.export_dir,
            args.hub_model_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            max_retries=args.max_retries,
        )
    except IncompleteExportError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except PushError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
