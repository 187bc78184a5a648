"""``nerforge predict``: tag raw text (JSON lines out) or a CoNLL file (the same file, one column more)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerforge.cli.common import (
    Progress,
    Timer,
    add_model_options,
    add_quiet,
    make_parser,
    predictor_from_args,
    run,
    write_text,
)
from nerforge.metric import prefix_bare_labels, score
from nerforge.predictor import conll_output_lines, drop_low_entities, needs_prefixing

DESCRIPTION = """Tag text with a token-classification model: every word predicted once, long sentences windowed.

Raw text (a file or stdin): one sentence a line, blank lines between paragraphs (the documents that
document context draws from); out: one JSON line per input line, {"text", "entities": [{"type",
"text", "start", "end", "score"}]}. A CoNLL file (--conll): written back with the predicted tag as one
more last column on every non-blank line, as conlleval reads it; when the file has gold tags
(a ner_tags column) the scores go to stderr and --metrics-json. The model's columns, windows and
document context are the export's own unless given."""

EXAMPLES = [
    'echo "Mara Lindqvist said Northwind Bank would open an office ." | nerforge predict --model outputs/quickstart/model',
    "nerforge predict --model outputs/quickstart/model --conll nerforge/sample_data/test.txt --output pred.conll",
    "nerforge predict --model dslim/bert-base-NER --min-score 0.8 sentences.txt --output entities.jsonl",
]


def build_parser(prog: str = "nerforge predict") -> argparse.ArgumentParser:
    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    p.add_argument("input", nargs="?", default=None, help="raw text file, one sentence a line (default: stdin)")
    p.add_argument("--conll", default=None, help="CoNLL column file to tag (instead of raw text)")
    p.add_argument(
        "--columns",
        nargs="+",
        default=None,
        help="column names of --conll (tokens, pos_tags, chunk_tags, ner_tags or _; ner_tags is the gold "
        "column); default: the export's training columns, else CoNLL-2003's four",
    )
    p.add_argument(
        "--output-scheme",
        choices=["auto", "iob1", "iob2"],
        default="auto",
        help="tagging scheme of the predicted CoNLL column; auto: the input's (IOB1 when its gold column is "
        "IOB1, as in the original CoNLL-2003 files, else IOB2), so that conlleval's token accuracy compares like "
        "with like",
    )
    p.add_argument("--separator", default=None, help="column separator of --conll (default: spaces or tabs)")
    p.add_argument("--encoding", default="utf-8", help="encoding of the input and the output")
    p.add_argument("--output", default=None, help="output file (default: stdout)")
    p.add_argument("--metrics-json", default=None, help="write the scores (a CoNLL file with gold tags) to this file")
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="drop entities scoring under S (CoNLL: their words get O); nerforge report lists precision and "
        "recall per threshold",
    )
    add_model_options(p)
    add_quiet(p)
    return p


def conll_columns(args) -> list[str]:
    """--columns, else the export's training columns, else CoNLL-2003's four."""
    from conll2003_loader.parsing import CONLL2003_COLUMNS
    from nerforge.scoring import data_settings

    return list(data_settings(args.model, columns=args.columns).columns or CONLL2003_COLUMNS)


def read_conll(args, columns: list[str]):
    """Parse (and so validate) the CoNLL file: its sentences, its raw lines and a leading BOM."""
    from conll2003_loader import ConllFormatError, read_conll

    path = Path(args.conll)
    sentences = list(read_conll(path, tuple(columns), args.separator, args.encoding))
    decoded = path.read_bytes().decode(args.encoding)  # read_conll has checked the encoding
    bom = "\ufeff" if decoded.startswith("\ufeff") else ""
    raw = decoded[len(bom) :].split("\n")  # split as read_conll does: line numbers agree
    for s in sentences:  # a sentence's token lines are consecutive from its first line
        for k, tok in enumerate(s.tokens):
            if tok not in raw[s.line - 1 + k]:
                raise ConllFormatError(path, s.line + k, "token line does not match the parsed sentence")
    return sentences, raw, bom


def format_metrics(m: dict) -> str:
    rows = [
        f"processed {m['num_words']} words in {m['num_sentences']} sentences; accuracy {100 * m['accuracy']:.2f}%",
        f"entity micro: precision {100 * m['precision']:.2f}%  recall {100 * m['recall']:.2f}%  F1 {100 * m['f1']:.2f}",
    ]
    for typ, r in m["per_type"].items():
        rows.append(
            f"  {typ:>8s}: precision {100 * r['precision']:6.2f}%  recall {100 * r['recall']:6.2f}%  "
            f"F1 {100 * r['f1']:6.2f}  ({r['support']})"
        )
    return "\n".join(rows)


def write_output(args, text: str) -> None:
    if args.output:
        write_text(args.output, text, encoding=args.encoding)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def tag_conll(args, predictor, parsed, columns: list[str]) -> str:
    from conll2003_loader import iob1_to_iob2, iob2_to_iob1

    sentences, raw, bom = parsed
    words = [s.tokens for s in sentences]
    pred, probs = predictor.predict_words_with_scores(words, [s.document_index for s in sentences])
    if needs_prefixing({t for s in pred for t in s}):
        pred = [prefix_bare_labels(s) for s in pred]
    if args.min_score is not None:
        pred = [drop_low_entities(t, p, args.min_score) for t, p in zip(pred, probs)]
    gold = [s.tags["ner_tags"] for s in sentences] if "ner_tags" in columns else None
    gold_iob1 = gold is not None and any(g != c for s in gold for g, c in zip(s, iob1_to_iob2(s)))
    scheme = args.output_scheme if args.output_scheme != "auto" else ("iob1" if gold_iob1 else "iob2")
    pred = [iob2_to_iob1(s) if scheme == "iob1" else iob1_to_iob2(s) for s in pred]
    write_output(args, bom + "\n".join(conll_output_lines(raw, sentences, pred)))
    summary = f"tagged {count(sum(map(len, words)), 'word')} in {count(len(words), 'sentence')} ({scheme.upper()})"
    if gold is not None:
        metrics = score(gold, pred)
        if gold_iob1 != (scheme == "iob1"):
            print(
                f"note: the gold tags are {'IOB1' if gold_iob1 else 'IOB2'} and the predictions {scheme.upper()}: "
                "tag accuracy counts B-/I- differences, entity scores (conlleval chunks) do not",
                file=sys.stderr,
            )
        if args.metrics_json:
            write_text(args.metrics_json, json.dumps(metrics, indent=2) + "\n")
        print(format_metrics(metrics), file=sys.stderr)
        summary += f"; entity F1 {100 * metrics['f1']:.2f}"
    return summary


def read_text(args) -> list[str]:
    if args.input and args.input != "-":
        path = Path(args.input)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        data = path.read_bytes()
        try:
            text = data.decode(args.encoding)
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise ValueError(f"{path}:{line}: bytes not valid {args.encoding}: {data[err.start : err.end]!r}") from None
    else:
        text = sys.stdin.read()
    text = text.removeprefix("\ufeff")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def tag_text(args, predictor, lines: list[str]) -> str:
    results = predictor.tag_text(lines, paragraphs=True)
    if args.min_score is not None:
        for r in results:
            r["entities"] = [e for e in r["entities"] if e["score"] >= args.min_score]
    for r in results:
        for e in r["entities"]:
            e["score"] = round(e["score"], 4)
    write_output(args, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    n = sum(len(r["entities"]) for r in results)
    return f"tagged {count(len(lines), 'line')}: {n} entit{'y' if n == 1 else 'ies'}"


def count(n: int, noun: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def main(argv: list[str] | None = None, prog: str = "nerforge predict") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        timer, progress = Timer(), Progress("predicting", args.quiet)
        # The input is read and checked first: bad input fails fast, before the model loads.
        columns = conll_columns(args) if args.conll else None
        parsed = read_conll(args, columns) if args.conll else read_text(args)
        predictor = predictor_from_args(args, progress)
        summary = tag_conll(args, predictor, parsed, columns) if args.conll else tag_text(args, predictor, parsed)
        progress.close()
        where = f" -> {args.output}" if args.output else ""
        print(f"{summary} in {timer}{where}", file=sys.stderr)

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
