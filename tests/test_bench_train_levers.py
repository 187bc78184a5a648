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

    train_levers.main(["--skip-model", "--skip-shapes", "--loop-shape", "bert-large-cased", "--steps", "6"])
    second = json.loads((tmp_path / "train_levers.json").read_text())
    assert calls[-1] == ("loop", "bert-large-cased")
    assert second["loop_bert-large-cased_6_steps"]["which"] == "loop"
    for part in ("model", "loop", "shapes"):  # kept from the first run, with its command
        assert second[part]["which"] == first[part]["which"]
        assert second[part]["command"] == "python -m bench.train_levers"
    assert second["loop_bert-large-cased_6_steps"]["command"].endswith("--loop-shape bert-large-cased --steps 6")


def test_loop_variants_subset_stores_the_ratios_of_pairs_that_ran(tmp_path, monkeypatch):
    """--loop-variants runs only those variants, in rotated turns, and the paired ratios are each round's."""
    speed = {"fp32": [2.0, 4.0], "bf16": [3.0, 5.0]}  # pieces/s per round: drift between rounds
    seen = []

    def child(kind, cfg, threads, log):
        if kind == "make_dataset":
            return {}
        name = cfg["tag"].removeprefix("lever_")
        seen.append(name)
        return {"pieces_per_s": speed[name][sum(n == name for n in seen) - 1], "precision": cfg["precision"]}

    monkeypatch.setattr(train_levers.measure, "run_child", child)
    monkeypatch.setattr(train_levers.measure, "recipe_args", lambda: [])
    args = train_levers.argparse.Namespace(
        loop_variants=["fp32", "bf16"],
        loop_shape="minilm",
        model=str(tmp_path),
        data_dir=str(tmp_path),
        steps=3,
        rounds=2,
        threads=1,
    )
    out = train_levers.loop_part(args)
    assert seen == ["fp32", "bf16", "bf16", "fp32"]  # the second round starts where the first ended
    assert out["bf16_vs_fp32_paired"] == {"recipe_dropout": [1.5, 1.25]}
    assert out["bf16_vs_fp32_same_dropout"] == {"recipe_dropout": round(4.0 / 3.0, 3)}
    assert out["speedup_vs_fp32"] == {"fp32": 1.0, "bf16": round(4.0 / 3.0, 3)}
    assert out["fast_masks_vs_torch_masks_paired"] == {}
    assert out["model"] == str(tmp_path)
