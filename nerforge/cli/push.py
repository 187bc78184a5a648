"""``nerforge push``: upload a finished export folder to the Hugging Face Hub in one commit."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from nerforge.cli.common import BadInput, add_alias, make_parser, one_line, run

DESCRIPTION = """Upload an export folder (weights, tokenizer, README.md model card, metrics) to the Hub in one
commit and print the commit URL. The token comes from HF_TOKEN or `hf auth login` and is never printed
or written. Timeouts, connection errors, HTTP 429 and 5xx are retried with backoff; the local folder is
never changed, so a failed push is retried by running the same command again. Check that the data's
licence allows publishing a model trained on it (CoNLL-2003's text is Reuters')."""

EXAMPLES = [
    "nerforge push --model outputs/bert-large-cased/model --hub-model-id your-name/bert-large-cased-conll2003",
    "nerforge push --model outputs/quickstart/model --hub-model-id your-name/ner-test --hub-private --hub-revision dev",
    "nerforge push --model outputs/minilm-cpu/model --hub-model-id your-name/ner --space-dir space --space-id your-name/ner-demo",
]


def build_parser(prog: str = "nerforge push") -> argparse.ArgumentParser:
    from nerforge.hub import DEFAULT_COMMIT_MESSAGE

    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    p.add_argument("--model", required=True, help="the export folder written by training, e.g. OUTPUT_DIR/model")
    p.add_argument("--hub-model-id", required=True, help="target repository, e.g. your-name/model-name")
    p.add_argument("--hub-private", action="store_true", help="create the repository as private")
    p.add_argument("--hub-revision", default=None, help="branch to push to (created if missing; default: main)")
    p.add_argument("--hub-commit-message", default=DEFAULT_COMMIT_MESSAGE, help="commit message")
    p.add_argument("--space-dir", default=None, help="a Space folder (nerforge demo --space) to upload as well")
    p.add_argument("--space-id", default=None, help="the Space's repository, e.g. your-name/model-demo")
    p.add_argument("--max-retries", type=int, default=3, help="retries for timeouts, 429 and 5xx")
    for dest in ("hub_model_id", "hub_private", "hub_revision", "hub_commit_message", "max_retries"):
        add_alias(p, dest, f"--{dest}")  # the training config's spelling
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge push") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from huggingface_hub.utils import validate_repo_id

        from nerforge.hub import push_export

        try:
            validate_repo_id(args.hub_model_id)
        except Exception as e:  # noqa: BLE001 - HFValidationError
            raise BadInput(f"invalid --hub-model-id {args.hub_model_id!r}: {one_line(e)}") from None
        if (args.space_dir is None) != (args.space_id is None):
            raise BadInput("--space-dir and --space-id go together")
        if args.space_dir is not None and not (Path(args.space_dir) / "app.py").is_file():
            raise BadInput(f"--space-dir {args.space_dir}: no app.py (write it with nerforge demo --space)")
        if args.max_retries < 0:
            raise BadInput("--max-retries must be >= 0")
        logging.getLogger("nerforge.hub").setLevel(logging.WARNING)
        url = push_export(
            args.model,
            args.hub_model_id,
            private=args.hub_private,
            revision=args.hub_revision,
            commit_message=args.hub_commit_message,
            max_retries=args.max_retries,
            space_dir=args.space_dir,
            space_id=args.space_id,
        )
        print(url)

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
