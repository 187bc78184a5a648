"""Does `pipeline("ner")` return the entities we scored? Sentence by sentence, on a CoNLL file.

    python -m bench.pipeline_agreement --model EXPORT [--conll ../shared/data/conll2003/test.txt] \
        [--strategy first simple] [--output bench/results/pipeline_agreement.json] [--examples disagreements.jsonl]

Each sentence's words are joined by single spaces and given to `pipeline("ner", aggregation_strategy=S)`;
its entities (character spans) are mapped back to words and compared with the entities of our predictor
(`nerforge.predictor`, first word piece of each word) on the same sentence alone, as (type, first word, last
word). A sentence agrees when both give the same set. For an export trained with document context the
entities we scored (each sentence with its document around it) are compared too: the pipeline cannot
see the document, and this second figure says how much that costs. Also counted: entities that start with `##` (a
word piece returned as an entity) and entities whose edges fall inside a word (the pipeline split a word
our data keeps whole, e.g. at a hyphen); every disagreement is listed with its reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerforge.pipeline_scores import word_spans
from nerforge.predictor import Predictor
from nerforge.taxonomy import entities


def to_words(ent: dict, spans: list[tuple[int, int]]) -> tuple[tuple[str, int, int] | None, bool]:
    """A pipeline entity as (type, first word, last word), and whether its edges fall inside a word."""
    covered = [k for k, (s, e) in enumerate(spans) if s < ent["end"] and ent["start"] < e]
    if not covered:
        return None, True
    inside = ent["start"] != spans[covered[0]][0] or ent["end"] != spans[covered[-1]][1]
    return (ent["entity_group"], covered[0], covered[-1]), inside


def agreement(
    model: str,
    sentences: list[list[str]],
    strategy: str,
    ours: list[set] | None = None,
    scored: list[set] | None = None,
) -> dict:
    """``ours``: our entities of each sentence tagged alone (predicted when None); ``scored``: the entities
    we scored with document context, when the export has it."""
    from transformers import pipeline

    if ours is None:
        predictor = Predictor.from_pretrained(model)
        ours = [set(entities(t)) for t in predictor.predict_words(sentences)]
    ner = pipeline("ner", model=model, aggregation_strategy=strategy, device=-1)
    texts = [" ".join(s) for s in sentences]
    agree, fragments, inside, examples, why = 0, 0, 0, [], {"an entity edge inside a word": 0, "other": 0}
    agree_scored = 0
    for k, (words, text, mine, theirs) in enumerate(zip(sentences, texts, ours, ner(texts, batch_size=32))):
        spans = word_spans(words)
        got, split_here = set(), False
        for ent in theirs:
            fragments += ent["word"].startswith("##")
            w, split_word = to_words(ent, spans)
            inside += split_word
            split_here |= split_word
            if w is not None:
                got.add(w)
        agree_scored += scored is not None and got == scored[k]
        if got == mine:
            agree += 1
            continue
        # The pipeline takes the words of the text as its tokenizer splits them (at hyphens, apostrophes,
        # dots: AL-AIN is AL + - + AIN), the data keeps AL-AIN whole: the later parts' labels then count.
        reason = "an entity edge inside a word" if split_here else "other"
        why[reason] += 1
        examples.append(
            {
                "reason": reason,
                "text": text,
                "ours": sorted(mine, key=lambda e: e[1]),
                "pipeline": [(e["entity_group"], e["word"], e["start"], e["end"]) for e in theirs],
            }
        )
    return {
        "strategy": strategy,
        "sentences": len(sentences),
        "agree": agree,
        "agreement": agree / max(1, len(sentences)),
        "fragments": fragments,
        "entities_inside_a_word": inside,
        "disagreements_by_reason": why,
        **({"agree_with_document_context": agree_scored} if scored is not None else {}),
        "examples": examples,
    }


def read_documents(path: Path) -> tuple[list[list[str]], list[int]]:
    """The words of every sentence of a CoNLL file and its document (counted at -DOCSTART- lines)."""
    sents, docs, cur, doc = [], [], [], 0
    for line in path.read_text(encoding="utf-8").split("\n"):
        f = line.split()
        if not f or f[0] == "-DOCSTART-":
            if cur:
                sents.append(cur)
                docs.append(doc)
            cur = []
            doc += bool(f) and bool(sents)
            continue
        cur.append(f[0])
    if cur:
        sents.append(cur)
        docs.append(doc)
    return sents, docs


def read_sentences(path: Path) -> list[list[str]]:
    return read_documents(path)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--conll", default=str(Path(__file__).resolve().parents[2] / "shared/data/conll2003/test.txt"))
    p.add_argument("--strategy", nargs="+", default=["first", "simple"])
    p.add_argument(
        "--output", default=None, help="figures as JSON (no sentence of the data: they are not ours to publish)"
    )
    p.add_argument(
        "--examples", default=None, help="every disagreement with its sentence, as JSON lines (keep it local)"
    )
    args = p.parse_args(argv)
    sentences, docs = read_documents(Path(args.conll))
    predictor = Predictor.from_pretrained(args.model)
    ours = [set(entities(t)) for t in predictor.predict_words(sentences)]  # no document ids: each alone
    scored = None
    if predictor.context_size or predictor.pack_length:
        scored = [set(entities(t)) for t in predictor.predict_words(sentences, docs)]
    results = [agreement(args.model, sentences, s, ours, scored) for s in args.strategy]
    for r in results:
        print(
            f"{r['strategy']}: {r['agree']} of {r['sentences']} sentences agree ({100 * r['agreement']:.2f}%), "
            f"{r['fragments']} ## fragments, {r['entities_inside_a_word']} entities with an edge inside a word; "
            f"disagreements: {r['disagreements_by_reason']}"
        )
        if scored is not None:
            print(
                f"  with document context (as scored): {r['agree_with_document_context']} of {r['sentences']} "
                f"agree ({100 * r['agree_with_document_context'] / max(1, r['sentences']):.2f}%)"
            )
    if args.examples:
        with open(args.examples, "w", encoding="utf-8") as f:
            for r in results:
                for e in r["examples"]:
                    f.write(json.dumps({"strategy": r["strategy"], **e}, ensure_ascii=False) + "\n")
    if args.output:
        figures = [{k: v for k, v in r.items() if k != "examples"} for r in results]
        note = "sentences of the data are not stored (licence): --examples FILE lists every disagreement"
        Path(args.output).write_text(
            json.dumps({"model": args.model, "conll": args.conll, "results": figures, "note": note}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
