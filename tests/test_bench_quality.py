"""bench/quality.py's bookkeeping: which runs count for a variant, and how settings are chosen on
validation. Pure functions over run records; no training."""

import argparse

import pytest


@pytest.fixture(scope="module")
def quality():
    from bench import quality

    return quality


def run(q, variant="ours_no_context", seed=0, val=0.9, test=0.85, epochs=1, **changes):
    settings = None if variant == "notebook" else dict(q.TUNED, **changes)
    return {
        "variant": variant,
        "seed": seed,
        "epochs": epochs,
        "f1": test,
        "validation_f1": val,
        "max_steps": None,
        "settings": settings,
        "command": None,
    }


def test_variant_figures_count_only_runs_at_the_recipe_settings(quality):
    other_lr = quality.TUNED["learning_rate"] * 3
    runs = [
        run(quality, seed=0, test=0.80),
        run(quality, seed=1, test=0.82),
        run(quality, seed=0, test=0.99, learning_rate=other_lr),
        run(quality, variant="notebook", seed=0, test=0.70, val=None),
    ]
    q = quality.summarise(runs)
    assert q["ours_no_context"]["n_seeds"] == 2
    assert q["ours_no_context"]["f1_mean"] == pytest.approx(0.81)
    assert q["notebook"]["f1_mean"] == pytest.approx(0.70)


def test_selection_ranks_by_validation_and_needs_the_most_seeds(quality):
    lr = quality.TUNED["learning_rate"]
    runs = [run(quality, seed=s, val=0.88 + 0.001 * s, test=0.99) for s in range(3)]
    runs += [run(quality, seed=s, val=0.89, test=0.50, learning_rate=2 * lr) for s in range(3)]
    runs += [run(quality, seed=0, val=0.95, tagging_scheme="iob1")]  # one seed: screened, not chosen
    sel = quality.selection(runs)
    assert sel["validation_best"]["learning_rate"] == 2 * lr  # test F1 plays no part
    assert not sel["recipe_is_validation_best"]
    assert [t["changed"] for t in sel["tried"]] == ["tagging_scheme=iob1", f"learning_rate={2 * lr}", "the recipe"]
    assert sel["tried"][2]["validation_f1_std"] == pytest.approx(0.001)


def test_selection_ignores_smoke_runs_and_other_variants(quality):
    runs = [
        run(quality, seed=0, val=0.88),
        dict(run(quality, seed=1, val=0.99), max_steps=5),
        run(quality, variant="ours_context", seed=0, val=0.99),
    ]
    sel = quality.selection(runs)
    assert [(t["changed"], t["n_seeds"]) for t in sel["tried"]] == [("the recipe", 1)]
    assert sel["recipe_is_validation_best"]


def test_run_keys_keep_settings_apart(quality):
    a, b = run(quality), run(quality, warmup_ratio=0.0)
    assert quality.run_key(a) != quality.run_key(b)
    assert quality.run_key(a) == quality.run_key(run(quality, val=0.1))


def test_parse_setting(quality):
    assert quality.parse_setting("learning_rate=2e-4") == ("learning_rate", 2e-4)
    assert quality.parse_setting("label_all_tokens=True") == ("label_all_tokens", True)
    assert quality.parse_setting("tagging_scheme=iob1") == ("tagging_scheme", "iob1")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY one of"):
        quality.parse_setting("per_device_train_batch_size=8")
    with pytest.raises(argparse.ArgumentTypeError, match="true or false"):
        quality.parse_setting("label_all_tokens=yes")


def test_legacy_runs_get_the_settings_of_their_time(quality, tmp_path, monkeypatch):
    import json

    path = tmp_path / "quality.json"
    path.write_text(
        json.dumps(
            {
                "all_runs": [
                    {"variant": "ours_no_context", "seed": 0, "epochs": 1, "f1": 0.8, "learning_rate": 2e-4},
                    {"variant": "ours_context", "seed": 0, "epochs": 1, "f1": 0.8},
                    {"variant": "notebook", "seed": 0, "epochs": 1, "f1": 0.7},
                    {
                        "variant": "ours_no_context",
                        "seed": 1,
                        "epochs": 1,
                        "f1": 0.8,  # recorded before the option existed
                        "settings": dict(quality.LEGACY, learning_rate=2e-4),
                    },
                    {
                        "variant": "ours_no_context",
                        "seed": 2,
                        "epochs": 1,
                        "f1": 0.8,
                        "settings": dict(quality.LEGACY, sparse_embedding_updates=True),
                    },
                ]
            }
        )
    )
    monkeypatch.setattr(quality, "RESULTS", path)
    runs = quality.load_runs()
    added = {"sparse_embedding_updates": False, "keep_words_whole": False}
    assert runs[0]["settings"] == dict(quality.LEGACY, learning_rate=2e-4, **added)
    assert runs[1]["settings"] == dict(quality.LEGACY, **added)
    assert runs[2]["settings"] is None
    assert runs[3]["settings"] == dict(quality.LEGACY, learning_rate=2e-4, **added)
    assert runs[4]["settings"]["sparse_embedding_updates"] is True
    assert all("learning_rate" not in r for r in runs)


def test_command_template_drops_what_differs_between_seeds(quality):
    c = (
        "/x/.venv/bin/python /x/train_accelerate.py --model_name_or_path m --output_dir /tmp/q/ours_no_q1e1 "
        "--overwrite_output_dir --report_to none --seed 1 --cache_dir /tmp/q/c --num_train_epochs 1"
    )
    assert quality.command_template(c) == (
        "python train_accelerate.py --model_name_or_path m --report_to none --seed SEED --num_train_epochs 1"
    )


def test_recipe_settings_read_the_config_as_the_loop_does(quality, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "model: {model_name_or_path: m, keep_words_whole: true}\n"
        "data: {tagging_scheme: iob1}\ntraining: {learning_rate: 2.0e-4}\n"
    )
    s = quality.measure.recipe_settings(path)
    from nerforge.config import DataConfig, TrainingConfig

    assert s == {
        "learning_rate": 2e-4,
        "warmup_ratio": TrainingConfig.warmup_ratio,
        "tagging_scheme": "iob1",
        "lr_scheduler_type": TrainingConfig.lr_scheduler_type,
        "label_all_tokens": DataConfig.label_all_tokens,
        "sparse_embedding_updates": TrainingConfig.sparse_embedding_updates,
        "keep_words_whole": True,
    }
    path.write_text("training: {learning_rat: 2.0e-4}\n")
    with pytest.raises(Exception, match="learning_rat"):
        quality.measure.recipe_settings(path)
    # the flags the quality runs and bench/run.py's equal-budget run pass to the loop
    assert quality.measure.recipe_args(s) == [
        "--learning_rate",
        "0.0002",
        "--warmup_ratio",
        str(TrainingConfig.warmup_ratio),
        "--lr_scheduler_type",
        "linear",
        "--tagging_scheme",
        "iob1",
        "--label_all_tokens",
        "False",
        "--sparse_embedding_updates",
        "False",
        "--keep_words_whole",
        "True",
    ]


def test_bf16_runs_are_kept_apart_from_the_fp32_figures(quality):
    fp32 = [run(quality, seed=s, test=0.85) for s in range(2)]
    bf16 = [dict(run(quality, seed=s, test=0.80 + 0.01 * s), precision="bf16") for s in range(2)]
    q = quality.summarise(fp32 + bf16)
    assert q["ours_no_context"]["f1_mean"] == pytest.approx(0.85)  # bf16 runs do not count there
    assert q["bf16"]["epochs_1"]["ours_no_context"]["f1_mean"] == pytest.approx(0.805)
    assert [t["n_seeds"] for t in quality.selection(fp32 + bf16)["tried"]] == [2]  # nor in the selection
    assert quality.run_key(fp32[0]) != quality.run_key(bf16[0])
    assert "ours_no_context (bf16 autocast)" in quality.markdown(dict(q, updated="t", machine={}))


def test_a_longer_budget_gets_its_own_selection(quality):
    runs = [run(quality, seed=s, val=0.88) for s in range(2)] + [
        run(quality, seed=s, val=0.89, tagging_scheme="iob1") for s in range(2)
    ]
    runs += [run(quality, seed=s, epochs=3, val=0.91) for s in range(2)]
    runs += [run(quality, seed=s, epochs=3, val=0.90, tagging_scheme="iob1") for s in range(2)]
    q = quality.summarise(runs)
    assert not q["settings_selection"]["recipe_is_validation_best"]  # 1 epoch: iob1 ahead
    sel3 = q["settings_selection_epochs_3"]
    assert sel3["epochs"] == 3 and sel3["recipe_is_validation_best"]  # 3 epochs: the recipe ahead
    md = quality.markdown(dict(q, updated="t", machine={}))
    assert "ours_no_context, 1 epoch," in md and "ours_no_context, 3 epochs," in md
    # which budget decides comes from the recipe's own epochs (configs/minilm-cpu.yaml)
    assert q["recipe_epochs"] == quality.recipe_epochs()
    assert md.count("recipe's own budget") == (q["recipe_epochs"] in (1, 3))
    assert "settings_selection_epochs_3" not in quality.summarise(runs[:4])  # nothing tried at 3 epochs


def test_recipe_epochs_read_the_config(quality, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: {model_name_or_path: m}\ntraining: {num_train_epochs: 5}\n")
    assert quality.recipe_epochs(path) == 5


def test_the_recipe_budget_decides_once_the_screens_winner_ran_there(quality, monkeypatch):
    monkeypatch.setattr(quality, "recipe_epochs", lambda: 3)
    runs = [run(quality, seed=s, val=0.88) for s in range(2)] + [
        run(quality, seed=s, val=0.89, tagging_scheme="iob1") for s in range(2)
    ]
    q = quality.summarise(runs + [run(quality, seed=0, epochs=3, val=0.91)])
    assert q["settings_choice"] == {
        "epochs": 1,
        "validation_best": dict(quality.TUNED, tagging_scheme="iob1"),
        "recipe_is_validation_best": False,
    }  # not run at 3 epochs yet
    md = quality.markdown(dict(q, updated="t", machine={}))
    assert "the recipe does **not** have it yet" in md
    runs += [run(quality, seed=s, epochs=3, val=0.91) for s in range(2)]
    runs += [run(quality, seed=s, epochs=3, val=0.90, tagging_scheme="iob1") for s in range(2)]
    q = quality.summarise(runs)
    assert q["settings_choice"] == {"epochs": 3, "validation_best": quality.TUNED, "recipe_is_validation_best": True}
    md = quality.markdown(dict(q, updated="t", machine={}))
    assert "decided at 3 epochs, below" in md and "does **not** have it yet" not in md


def test_a_conll_only_lead_of_a_setting_chosen_on_two_corpora_is_said_so(quality):
    """label_all_tokens is chosen on CoNLL-2003 and WNUT-17 together (issue 27 section 7): where flipping it
    leads on CoNLL-2003 validation alone, the table says that choice holds rather than that the recipe
    lags; flipping any other setting still reads as the recipe lagging."""
    flip = not quality.TUNED["label_all_tokens"]
    runs = [run(quality, seed=s, val=0.88) for s in range(2)]
    md = quality.markdown(
        dict(quality.summarise(runs + [run(quality, seed=s, val=0.89, label_all_tokens=flip) for s in range(2)]),
             updated="t", machine={})
    )  # fmt: skip
    assert "leads on CoNLL-2003 alone" in md and "does **not** have it yet" not in md
    md = quality.markdown(
        dict(quality.summarise(runs + [run(quality, seed=s, val=0.89, tagging_scheme="iob1") for s in range(2)]),
             updated="t", machine={})
    )  # fmt: skip
    assert "does **not** have it yet" in md and "leads on CoNLL-2003 alone" not in md


def test_the_header_says_on_which_machines_the_runs_were_made(quality):
    epyc = {"cpu": "AMD EPYC", "cores": 2}
    runs = [dict(run(quality, seed=s), machine=epyc) for s in range(3)]
    runs += [dict(run(quality, seed=3), machine={"cpu": "Intel Xeon", "cores": 2}), run(quality, seed=4)]
    q = quality.summarise(runs)
    md = quality.markdown(dict(q, updated="t", machine={"cpu": "Intel Xeon", "cores": 2}))
    assert (
        "on Intel Xeon (2 cores). Runs by machine: AMD EPYC (2 cores) 3, Intel Xeon (2 cores) 1, not recorded 1." in md
    )
