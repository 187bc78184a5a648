"""``nerforge data``: build a dataset folder that ``load_dataset`` reads, or write the made-up sample corpus."""

from __future__ import annotations

import argparse
import sys

from nerforge.cli.common import HelpFormatter, add_quiet, make_parser, run

DESCRIPTION = """Data jobs. build: raw CoNLL-style files -> Parquet shards and a dataset card that
load_dataset(DIR) reads (the same as python -m conll2003_loader build), optionally pushed to the Hub.
sample: the made-up sample corpus of the quick start (CoNLL-2003 layout, IOB1), written to a folder."""

EXAMPLES = [
    "nerforge data build --data-dir data/conll2003 --output ./conll2003_loader",
    "nerforge data build --data-dir data/wnut17 --train-file wnut17train.conll --validation-file emerging.dev.conll "
    "--test-file emerging.test.annotated --columns tokens ner_tags --output wnut17_built",
    "nerforge data sample my_sample --seed 1",
]


def build_parser(prog: str = "nerforge data") -> argparse.ArgumentParser:
    from conll2003_loader.__main__ import BUILD_DESCRIPTION, add_build_arguments

    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    sub = p.add_subparsers(dest="job", required=True, metavar="{build,sample}")
    b = sub.add_parser(
        "build",
        help="raw CoNLL files -> a load_dataset folder",
        description=BUILD_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    add_build_arguments(b)
    add_quiet(b)
    s = sub.add_parser(
        "sample",
        help="write the made-up sample corpus",
        description=DESCRIPTION.split("\n")[-1],
        formatter_class=HelpFormatter,
    )
    s.add_argument("output", help="folder to write train.txt, valid.txt and test.txt into (created if missing)")
    s.add_argument("--seed", type=int, default=0, help="seed of the sentences (0: the bundled copy's)")
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge data") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        if args.job == "sample":
            from nerforge.sample_corpus import write_corpus

            write_corpus(args.output, seed=args.seed)
            print(f"wrote {args.output}: train.txt, valid.txt, test.txt")
            return 0
        import datasets

        from conll2003_loader.__main__ import run_build

        if args.quiet or not sys.stderr.isatty():
            datasets.disable_progress_bars()
        print(run_build(args))  # a failed push is PushFailed: exit 1 (nerforge.cli.common.exit_status)

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
