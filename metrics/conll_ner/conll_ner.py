"""conll_ner: entity-level CoNLL-2003 NER scores as an offline `evaluate` module.

A thin wrapper: every number is computed by ``nerforge.metric.score`` so the
project has exactly one implementation of the score.  Load it with
``evaluate.load("<path to nerforge checkout>/metrics/conll_ner")``.
"""

import datasets
import evaluate

from nerforge.metric import score

_DESCRIPTION = """\
Entity-level precision, recall and F1 for IOB1/IOB2 tagged sequences, using the
lenient chunking rules of the CoNLL-2003 `conlleval` script (computed by seqeval
in its default mode through `nerforge.metric.score`).  Also reports per-word tag
accuracy, the support-weighted per-type F1 (`weighted_f1`, for comparison with
older results only) and per-entity-type scores.
"""

_CITATION = """\
@inproceedings{tjong-kim-sang-de-meulder-2003-introduction,
    title = "Introduction to the {C}o{NLL}-2003 Shared Task: Language-Independent Named Entity Recognition",
    author = "Tjong Kim Sang, Erik F. and De Meulder, Fien",
    booktitle = "Proceedings of the Seventh Conference on Natural Language Learning at {HLT}-{NAACL} 2003",
    year = "2003",
    pages = "142--147",
}
@misc{seqeval,
    title = {{seqeval}: A Python framework for sequence labeling evaluation},
    url = {https://github.com/chakki-works/seqeval},
    author = {Hiroki Nakayama},
    year = {2018},
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of sentences, each a list of predicted word-level tags (str).
    references: list of sentences, each a list of gold tags; every sentence must
        have as many tags as the corresponding prediction (else ValueError).
Returns:
    precision, recall, f1: entity-level micro averages in [0, 1].
    accuracy: per-word tag accuracy.
    weighted_f1: support-weighted mean of per-type F1 (not the CoNLL number).
    per_type: {TYPE: {precision, recall, f1, support}}.
    num_sentences, num_words: sizes of the scored data.
Example:
    >>> metric = evaluate.load("metrics/conll_ner")
    >>> metric.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])["f1"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConllNer(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://www.clips.uantwerpen.be/conll2003/ner/"],
        )

    def _compute(self, predictions, references):
        return score([list(r) for r in references], [list(p) for p in predictions])
