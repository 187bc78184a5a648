"""bench.train_levers: a part not run keeps its last figures (with the date and command that made them), and
the loop on a BERT shape lands under its own key beside the MiniLM loop's."""

import json

from bench import train_levers


def test_parts_not_run_keep_their_last_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(train_levers, "RESULTS", tmp_path)
    monkeypatch.setattr(train_levers.measure, "machine", lambda: {"cpu": "test"})
    calls = []

    def fake(part):
        def run(args):
            calls.append((part, getattr(args, "loop_shape", None)))
            return {"speedup_vs_fp32": {"fp32": 1.0}, "which": part}

        return run

    monkeypatch.setattr(train_levers, "model_part", fake("model"))
    monkeypatch.setattr(train_levers, "loop_part", fake("loop"))
    monkeypatch.setattr(train_levers, "shapes_part", lambda args: {"models": {}, "which": "shapes"})

    train_levers.main([])  # all three parts, MiniLM loop
    first = json.loads((tmp_path / "train_levers.json").read_text())
    assert {"model", "loop", "shapes"} <= set(first)

    train_levers.main(["--skip-model", "--skip-shapes", "--loop-shape", "bert-large-cased"])
    second = json.loads((tmp_path / "train_levers.json").read_text())
    assert calls[-1] == ("loop", "bert-large-cased")
    assert second["loop_bert-large-cased"]["which"] == "loop"
    for part in ("model", "loop", "shapes"):  # kept from the first run, with its command
        assert second[part]["which"] == first[part]["which"]
        assert second[part]["command"] == "python -m bench.train_levers"
    assert second["loop_bert-large-cased"]["command"].endswith("--loop-shape bert-large-cased")
