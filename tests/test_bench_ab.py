"""bench/ab.py's paired summary: per-round ratios B/A and their median. Synthetic rounds, nothing run."""

from bench import ab


def test_paired_ratios_are_per_round_with_their_median():
    rounds = [
        {"a": {"sentences_per_s": a}, "b": {"sentences_per_s": b}}
        for a, b in ((70.0, 77.0), (80.0, 76.0), (72.0, 80.64))
    ]
    s = ab.paired_ratios(rounds)
    assert s["ratios_b_over_a"] == [1.1, 0.95, 1.12]
    assert (s["median"], s["min"], s["max"]) == (1.1, 0.95, 1.12)
    assert s["b_faster_in"] == "2 of 3 rounds"
