"""The real entry point on a 2-layer BERT and a small made-up corpus: as a process where the console, a
kill or the exact files of a real run are asserted, its main() in this process otherwise."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import NER, ROOT
from inprocess import run_training

SCRIPT = str(ROOT / "train_accelerate.py")
KILL_AT = str(ROOT / "tests" / "kill_at.py")
FAST = [
    "--tiny_model",
    "--evaluate_pipeline",  # the pipeline figures: test_the_run_scores_its_model_through_pipeline_ner
    "false",
    "--max_length",
    "64",
    "--stride",
    "8",
    "--report_to",
    "none",
    "--learning_rate",
    "3e-3",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "16",
    "--logging_steps",
    "2",
]


def run(*args, env=None, check=True, fresh_process=False):
    """The training script as users run it. With NERFORGE_KILL_AT in `env`, a subprocess through the
    test hook tests/kill_at.py, which SIGKILLs it at that point; with `fresh_process` or an `env` that
    sets more than accelerate's variables (a PYTHONPATH with a sitecustomize that injects faults, a hook's
    variables), a subprocess of train_accelerate.py itself (umask 022, the usual one); otherwise its
    main() in this process (tests/inprocess.py: the same run without six seconds of imports)."""
    e = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    e.update(env or {})
    fresh_process = fresh_process or any(not k.startswith("ACCELERATE_") for k in env or {})
    if "NERFORGE_KILL_AT" in e or fresh_process:
        script = KILL_AT if "NERFORGE_KILL_AT" in e else SCRIPT
        p = subprocess.run(
            [sys.executable, script, *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=e,
            timeout=600,
            preexec_fn=lambda: os.umask(0o022),
        )
    else:
        p = run_training(*args, env={"TOKENIZERS_PARALLELISM": "false", **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from nerforge.sample_corpus import write_corpus

    d = tmp_path_factory.mktemp("corpus")
    write_corpus(d, seed=1, sizes=(("train", 96), ("valid", 40), ("test", 40)))
    return d


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def finished_run_args(corpus, out):
    return ["--data_dir", str(corpus), "--output_dir", str(out), *FAST, "--max_steps", "12", "--eval_steps", "4",
            "--save_steps", "4", "--save_total_limit", "5", "--report_to", "tensorboard", "--example_text",
            "Mara Lindqvist visited Port Ellis ."]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    p = run(*finished_run_args(corpus, out), fresh_process=True)  # the exact files and console of a process
    return out, p


def test_the_run_in_this_process_is_the_process_s_bit_for_bit(finished_run, corpus, tmp_path):
    """What the in-process runs of these tests stand on (tests/inprocess.py): the same run, started in
    this process after a bf16 one, prints the same lines and writes the same weights, checkpoints and
    metrics (timings aside) as the fresh process of finished_run."""
    fresh, fresh_p = finished_run
    bf16 = run("--data_dir", corpus, "--output_dir", tmp_path / "bf16", *FAST, "--max_steps", "1",
               env={"ACCELERATE_MIXED_PRECISION": "bf16"})  # fmt: skip
    assert "precision bf16" in bf16.stdout  # accelerate's state must not carry it into the next run
    here = tmp_path / "here"
    p = run(*finished_run_args(corpus, here))
    assert [x.replace(str(here), "OUT") for x in p.stdout.splitlines()] == [
        x.replace(str(fresh), "OUT") for x in fresh_p.stdout.splitlines()
    ]
    for name in ("model", "checkpoints/step-000004", "checkpoints/step-000008", "checkpoints/step-000012"):
        a, b = weights(here / name), weights(fresh / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (here, fresh))
    timings = {k for k in theirs if k.startswith("train_") and k.endswith("_s")}
    assert timings and {k: v for k, v in ours.items() if k not in timings} == {
        k: v for k, v in theirs.items() if k not in timings
    }


def test_exact_files_and_metrics(finished_run):
    out, p = finished_run
    # the run's own bar and lines only: no transformers bar per checkpoint save or model reload
    assert "Writing model shards" not in p.stderr and "Loading weights" not in p.stderr
    assert sorted(x.name for x in out.iterdir()) == [
        "best_model",
        "checkpoints",
        "logs",
        "metrics.json",
        "model",
        "tiny_model_init",
    ]
    assert sorted(x.name for x in (out / "checkpoints").iterdir()) == ["step-000004", "step-000008", "step-000012"]
    assert sorted(x.name for x in (out / "model").iterdir()) == [
        "README.md",
        "calibration.png",
        "config.json",
        "metrics.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_config.yaml",
        "training_curve.png",
    ]
    # files as a plain open() makes them under the usual umask (022), not mkstemp's owner-only 0600
    import stat

    for folder in ("model", "best_model", "checkpoints/step-000012"):
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in (out / folder).iterdir()}
        assert set(modes.values()) == {"0o644"}, (folder, modes)
    assert oct(stat.S_IMODE((out / "metrics.json").stat().st_mode)) == "0o644"
    ckpt = out / "checkpoints" / "step-000012"
    assert {"manifest.json", "model.safetensors", "optimizer.bin", "trainer_state.json", "training_config.yaml"} <= {
        x.name for x in ckpt.iterdir()
    }
    assert not list(out.rglob("*.bin")) or all(x.name == "optimizer.bin" for x in out.rglob("*.bin"))

    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        m = metrics[split]
        assert {"precision", "recall", "f1", "accuracy", "weighted_f1", "per_type"} <= set(m)
        assert set(m["per_type"]) == {"PER", "ORG", "LOC", "MISC"}
        assert all({"precision", "recall", "f1", "support"} <= set(v) for v in m["per_type"].values())
        assert m["num_sentences"] == 40
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert [h["step"] for h in metrics["history"] if "eval_f1" in h] == [4, 8, 12]

    config = json.loads((out / "model" / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(NER)}
    saved = yaml.safe_load((out / "model" / "training_config.yaml").read_text())
    assert saved["training"]["max_steps"] == 12 and saved["model"]["tiny_model"] is True
    assert "effective batch (per device x processes x accumulation): 8" in p.stdout
    assert "distributed: NO: one process (BertForTokenClassification)" in p.stdout
    assert "pipeline('ner')" in p.stdout


def test_packed_document_context_trains_and_scores_every_sentence(corpus, tmp_path):
    import re

    out = tmp_path / "o"
    p = run(
        "--data_dir",
        str(corpus),
        "--output_dir",
        str(out),
        *FAST,
        "--max_steps",
        "3",
        "--context_size",
        "8",
        "--pack_length",
        "40",
    )
    windows = int(re.search(r"training windows: (\d+)", p.stdout).group(1))
    assert windows < 96 // 2  # several sentences of a document per window
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["num_sentences"] == metrics["validation"]["num_sentences"] == 40
    saved = yaml.safe_load((out / "model" / "training_config.yaml").read_text())
    assert (saved["data"]["context_size"], saved["data"]["pack_length"]) == (8, 40)
    # what pipeline('ner') gets (each sentence alone) is scored too, and the card says it
    from nerforge.config import DataConfig
    from nerforge.predictor import Predictor, export_windows
    from nerforge.scoring import load_split, score_split

    alone = metrics["sentence_alone"]
    assert set(alone) == {"validation", "test"}
    predictor = Predictor.from_pretrained(str(out / "model"), export_windows(out / "model").alone())
    test = load_split("test", DataConfig(data_dir=str(corpus)))
    assert alone["test"]["f1"] == pytest.approx(score_split(predictor, test)["f1"], abs=1e-9)
    assert f"test, each sentence alone (as pipeline('ner') sees it): F1 {100 * alone['test']['f1']:.2f}" in p.stdout
    card = " ".join((out / "model" / "README.md").read_text().split())
    assert f"test F1 {100 * alone['test']['f1']:.2f} against {100 * metrics['test']['f1']:.2f}" in card


def test_the_run_scores_its_model_through_pipeline_ner(corpus, tmp_path):
    """metrics.json's ``pipeline`` (the card's first table): transformers' pipeline('ner') over the
    trained model, fed one sentence and one document per call. Fed one sentence it sees what our
    predictor sees without document context, so its F1 is the run's "each sentence alone" F1; fed whole
    documents it gets another input and its own figure."""
    out = tmp_path / "o"
    args = list(FAST)
    args[args.index("--evaluate_pipeline") + 1] = "true"
    p = run("--data_dir", corpus, "--output_dir", out, *args, "--max_steps", "80", "--eval_steps", "80",
            "--context_size", "16", "--calibrate", "false")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    pipe, alone = metrics["pipeline"], metrics["sentence_alone"]
    assert (pipe["aggregation_strategy"], set(pipe["sentence"]), set(pipe["document"])) == (
        "first",
        {"validation", "test"},
        {"validation", "test"},
    )
    assert min(metrics["test"]["f1"], alone["test"]["f1"]) > 0.8  # a model that finds entities, so F1 tells
    for split in ("validation", "test"):
        # equal here; on the real test set 82.30 against 82.32 (BENCHMARKS.md), so one entity of slack
        assert pipe["sentence"][split]["f1"] == pytest.approx(alone[split]["f1"], abs=0.011), split
    for mode in ("document", "sentence"):
        figures = ", ".join(f"{s} F1 {100 * pipe[mode][s]['f1']:.2f}" for s in ("validation", "test"))
        assert f"pipeline('ner'), one {mode} per call: {figures}" in p.stdout
    card = " ".join((out / "model" / "README.md").read_text().split())
    assert f"{100 * pipe['document']['test']['f1']:.2f}" in card


def test_sentence_alone_fraction_windows_some_documents_one_sentence_at_a_time(corpus, tmp_path):
    import re

    def windows(*extra):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        args = ["--data_dir", str(corpus), "--output_dir", str(out), *FAST, "--max_steps", "1", "--calibrate", "false"]
        p = run(*args, "--context_size", "8", "--pack_length", "40", *extra)
        return int(re.search(r"training windows: (\d+)", p.stdout).group(1)), json.loads(
            (out / "metrics.json").read_text()
        )

    packed, _ = windows()
    all_alone, metrics = windows("--sentence_alone_fraction", "1")
    half, _ = windows("--sentence_alone_fraction", "0.5")
    assert all_alone == 96  # one window per training sentence (none is longer than a window)
    assert packed < half < all_alone
    assert metrics["test"]["num_sentences"] == 40 and "sentence_alone" in metrics  # evaluation keeps the context


def test_export_loads_in_pipeline_with_whole_entities(finished_run):
    from transformers import pipeline

    out, _ = finished_run
    ner = pipeline("ner", model=str(out / "model"), aggregation_strategy="first")
    text = "Mara Lindqvist said Northwind Bank would open an office in Port Ellis ."
    for ent in ner(text):
        assert ent["entity_group"] in {"PER", "ORG", "LOC", "MISC"}
        assert text[ent["start"] : ent["end"]] == ent["word"] or ent["word"] in text
        assert not ent["word"].startswith("##")


def test_memorises_twenty_sentences(tmp_path):
    from nerforge.sample_corpus import write_corpus

    write_corpus(tmp_path / "d", seed=5, sizes=(("train", 20),))
    for name in ("valid", "test"):  # score on the very sentences it trains on
        (tmp_path / "d" / f"{name}.txt").write_text((tmp_path / "d" / "train.txt").read_text())
    run(
        "--data_dir",
        str(tmp_path / "d"),
        "--output_dir",
        str(tmp_path / "o"),
        *FAST,
        "--num_train_epochs",
        "30",
        "--warmup_ratio",
        "0.0",
    )
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["test"]["f1"] >= 0.95, metrics["test"]


@pytest.mark.parametrize(
    "kill_at",
    [
        "step:7",
        pytest.param("save:8", marks=pytest.mark.release),
        pytest.param("eval:8", marks=pytest.mark.release),
        "eval:4",
    ],
)
def test_killed_run_resumes_to_identical_weights(corpus, finished_run, tmp_path, kill_at):
    reference, _ = finished_run
    out = tmp_path / "out"
    args = [
        "--data_dir",
        str(corpus),
        "--output_dir",
        str(out),
        *FAST,
        "--max_steps",
        "12",
        "--eval_steps",
        "4",
        "--save_steps",
        "4",
        "--save_total_limit",
        "5",
    ]
    p = run(*args, env={"NERFORGE_KILL_AT": kill_at}, check=False)
    assert p.returncode == -9, p.stderr[-2000:]
    if kill_at == "save:8":  # the half-written checkpoint is not a checkpoint
        assert sorted(x.name for x in (out / "checkpoints").iterdir()) == [".tmp-step-000008", "step-000004"]
    run(*args, "--resume_from_checkpoint", "latest")
    final, ref = weights(out / "checkpoints" / "step-000012"), weights(reference / "checkpoints" / "step-000012")
    assert max((final[k] - ref[k]).abs().max().item() for k in ref) <= 1e-6
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    for split in ("validation", "test"):
        assert ours[split] == theirs[split]


def test_sparse_embedding_updates_train_resume_and_leave_unused_rows_alone(corpus, tmp_path):
    args = [
        "--data_dir",
        str(corpus),
        *FAST,
        "--max_steps",
        "8",
        "--save_steps",
        "4",
        "--eval_steps",
        "4",
        "--sparse_embedding_updates",
        "true",
    ]
    ref, out = tmp_path / "ref", tmp_path / "out"
    run(*args, "--output_dir", str(ref))
    ckpt = ref / "checkpoints" / "step-000008"
    assert {"optimizer.bin", "optimizer_1.bin"} <= {x.name for x in ckpt.iterdir()}  # AdamW, SparseAdam
    assert len(json.loads((ckpt / "trainer_state.json").read_text())["scheduler"]) == 2
    assert yaml.safe_load((ref / "model" / "training_config.yaml").read_text())["training"]["sparse_embedding_updates"]
    # rows of pieces the training set never uses ([MASK]) keep their initial values; [CLS] rows move
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ref / "tiny_model_init"))
    key = "bert.embeddings.word_embeddings.weight"
    init, final = weights(ref / "tiny_model_init")[key], weights(ckpt)[key]
    assert (final[tok.mask_token_id] == init[tok.mask_token_id]).all()
    assert not (final[tok.cls_token_id] == init[tok.cls_token_id]).all()
    # killed between the two checkpoints, resumed: the same weights and metrics as without the kill
    p = run(*args, "--output_dir", str(out), env={"NERFORGE_KILL_AT": "step:6"}, check=False)
    assert p.returncode == -9, p.stderr[-2000:]
    run(*args, "--output_dir", str(out), "--resume_from_checkpoint", "latest")
    got, want = weights(out / "checkpoints" / "step-000008"), weights(ckpt)
    assert max((got[k] - want[k]).abs().max().item() for k in want) <= 1e-6
    assert (
        json.loads((out / "metrics.json").read_text())["test"] == json.loads((ref / "metrics.json").read_text())["test"]
    )


def test_sparse_embedding_updates_refuse_fp16(corpus, tmp_path):
    # accelerate steps the fp16 loss scaler once per optimizer: the second optimizer's gradients would
    # be unscaled twice, so the combination is an error before any data is read
    p = run(
        "--data_dir",
        str(corpus),
        "--output_dir",
        str(tmp_path / "o"),
        *FAST,
        "--max_steps",
        "1",
        "--sparse_embedding_updates",
        "true",
        env={"ACCELERATE_MIXED_PRECISION": "fp16"},
        check=False,
    )
    assert p.returncode == 2 and "precision fp16" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o" / "model").exists()


def test_bf16_on_cpu_trains_with_fp32_attention_and_exports_plain_sdpa(corpus, tmp_path):
    # attention_precision auto: under bf16 on a CPU without attention dropout the attention runs in fp32
    # (its faster backward there); the export names no attention of ours, so pipeline() and
    # from_pretrained load it as usual
    from transformers import AutoModelForTokenClassification, pipeline

    out = tmp_path / "o"
    args = ("--data_dir", str(corpus), *FAST, "--max_steps", "4", "--eval_steps", "2")
    bf16 = {"ACCELERATE_MIXED_PRECISION": "bf16"}
    p = run(*args, "--output_dir", str(out), "--attention_dropout", "0", "--dropout_masks", "auto", env=bf16)
    assert "precision bf16" in p.stdout
    assert "attention in fp32 under bf16 (attention_precision auto)" in p.stdout
    # dropout_masks auto on a CPU: nerforge.dropout's masks (the attention has no dropout here, so the fast
    # attention is there for its fp32 alone)
    assert "dropout masks: fast" in p.stdout and "and the attention's (dropout_masks auto)" in p.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(h["loss"]) for h in metrics["history"] if "loss" in h)
    assert "nerforge" not in (out / "model" / "config.json").read_text()
    saved = yaml.safe_load((out / "model" / "training_config.yaml").read_text())
    assert saved["training"]["attention_precision"] == "auto" and saved["training"]["dropout_masks"] == "auto"
    model = AutoModelForTokenClassification.from_pretrained(str(out / "model"))
    assert model.config._attn_implementation == "sdpa"
    ner = pipeline("ner", model=str(out / "model"), aggregation_strategy="first")
    assert isinstance(ner("Mara Lindqvist visited Port Ellis ."), list)
    # with the encoder's attention dropout (the math path runs) auto leaves it in bf16, as does mixed;
    # fp32 forces it; fp32 runs never touch it. The default dropout_masks (torch's masks): no swap.
    p = run(*args, "--output_dir", str(tmp_path / "d"), env=bf16)
    assert "precision bf16" in p.stdout and "attention in fp32" not in p.stdout
    assert "dropout masks" not in p.stdout
    p = run(
        *args,
        "--output_dir",
        str(tmp_path / "m"),
        "--attention_dropout",
        "0",
        "--attention_precision",
        "mixed",
        env=bf16,
    )
    assert "attention in fp32" not in p.stdout
    p = run(*args, "--output_dir", str(tmp_path / "x"), "--attention_precision", "fp32", env=bf16)
    assert "attention in fp32 under bf16 (attention_precision fp32)" in p.stdout
    p = run(*args, "--output_dir", str(tmp_path / "f"), "--attention_precision", "fp32")
    assert "precision no" in p.stdout and "attention in fp32" not in p.stdout
    # torch's masks (the default): the fp32 attention alone (transformers' SDPA in fp32), no swap
    p = run(*args, "--output_dir", str(tmp_path / "t"), "--attention_dropout", "0", env=bf16)
    assert "attention in fp32 under bf16" in p.stdout and "dropout masks" not in p.stdout
    assert "nerforge" not in (tmp_path / "t" / "model" / "config.json").read_text()


def test_existing_output_dir_is_not_overwritten(finished_run, corpus):
    out, _ = finished_run
    before = (out / "model" / "model.safetensors").read_bytes()
    p = run("--data_dir", str(corpus), "--output_dir", str(out), *FAST, "--max_steps", "1", check=False)
    assert p.returncode == 2 and "--overwrite-output-dir" in p.stderr
    assert (out / "model" / "model.safetensors").read_bytes() == before


def test_bad_config_and_bad_data_exit_2_without_traceback(tmp_path):
    p = run("--learning_rat", "1", check=False)
    assert p.returncode == 2 and "--learning_rat" in p.stderr and "Traceback" not in p.stderr
    d = tmp_path / "bad"
    d.mkdir()
    for name in ("train", "valid", "test"):
        (d / f"{name}.txt").write_text("EU NNP I-NP I-ORG\nrejects VBZ I-VP\n")
    p = run("--data_dir", str(d), "--output_dir", str(tmp_path / "o"), *FAST, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "train.txt:2" in p.stderr


def test_per_split_file_names_and_a_position_limit(tmp_path):
    """WNUT-style file names train without renaming; a max_length over the model's positions is one
    line and exit 2, the check shared with the predictor (nerforge.modeling.position_limit)."""
    from nerforge.sample_corpus import write_corpus

    d = tmp_path / "d"
    write_corpus(d, seed=3, sizes=(("train", 24), ("valid", 8), ("test", 8)))
    for old, new in (("train.txt", "wnut17train.conll"), ("valid.txt", "emerging.dev.conll")):
        (d / old).rename(d / new)
    files = ["--train_file", "wnut17train.conll", "--validation_file", "emerging.dev.conll", "--test_file", "test.txt"]
    run("--data_dir", str(d), *files, "--output_dir", str(tmp_path / "o"), *FAST, "--max_steps", "2")
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["validation"]["num_sentences"] == 8 and metrics["test"]["num_sentences"] == 8
    assert metrics["train_sentences"] == 24 and metrics["train_windows"] >= 24
    saved = yaml.safe_load((tmp_path / "o" / "model" / "training_config.yaml").read_text())
    assert saved["data"]["train_file"] == "wnut17train.conll"
    fast = [a if a != "64" else "1024" for a in FAST]  # --max_length 1024 > the tiny BERT's 512 positions
    p = run("--data_dir", str(d), *files, "--output_dir", str(tmp_path / "o2"), *fast, "--max_steps", "1", check=False)
    assert p.returncode == 2 and "max_length 1024 exceeds" in p.stderr and "512 positions" in p.stderr
    assert "Traceback" not in p.stderr


def test_calibration_keeps_every_tag_and_lowers_the_validation_nll(finished_run):
    """The export's classifier has the fitted temperature folded in; best_model/ holds the same
    weights before folding. Tags equal on every word, validation NLL lower, as metrics.json says."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from conll2003_loader import load_splits
    from nerforge.calibration import nll
    from nerforge.config import load_saved
    from nerforge.predictor import Predictor, WindowSettings

    out, _ = finished_run
    cal = json.loads((out / "metrics.json").read_text())["calibration"]
    assert cal["temperature"] != 1.0 and cal["fitted_on"] == "validation"
    cfg = load_saved(out / "model" / "training_config.yaml")
    splits = load_splits(**cfg.data.loader_kwargs())
    tok = AutoTokenizer.from_pretrained(out / "model")
    windows = WindowSettings(max_length=cfg.data.max_length, stride=cfg.data.stride)
    before = Predictor(AutoModelForTokenClassification.from_pretrained(out / "best_model"), tok, windows, device="cpu")
    after = Predictor.from_pretrained(out / "model", device="cpu")
    for split in ("validation", "test"):
        z0 = torch.cat(before.predict_logits(splits[split]["tokens"]))
        z1 = torch.cat(after.predict_logits(splits[split]["tokens"]))
        assert torch.equal(z0.argmax(-1), z1.argmax(-1))  # every tag unchanged
        assert torch.allclose(z0 / cal["temperature"], z1, atol=1e-4)  # logits / T inside the model
        gold = torch.tensor([t for s in splits[split]["ner_tags"] for t in s])
        assert nll(z1, gold) == pytest.approx(cal[split]["after"]["word"]["nll"], rel=1e-4)
        assert nll(z0, gold) == pytest.approx(cal[split]["before"]["word"]["nll"], rel=1e-4)
    assert cal["validation"]["after"]["word"]["nll"] < cal["validation"]["before"]["word"]["nll"]
    card = (out / "model" / "README.md").read_text()
    assert f"T = {cal['temperature']:.3f}" in card and "![reliability diagram](calibration.png)" in card


def test_calibrate_false_leaves_the_head_alone(corpus, tmp_path):
    run(
        "--data_dir",
        str(corpus),
        "--output_dir",
        str(tmp_path / "o"),
        *FAST,
        "--max_steps",
        "2",
        "--calibrate",
        "false",
    )
    assert "calibration" not in json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert weights(tmp_path / "o" / "model")["classifier.weight"].equal(
        weights(tmp_path / "o" / "best_model")["classifier.weight"]
    )


def test_two_runs_in_one_python_process_each_get_their_own_accelerate_state(corpus, tmp_path, monkeypatch, capsys):
    """As a notebook or a sweep in one script runs it: the second run does not inherit the first one's
    precision or accumulation (accelerate keeps them per process). Called directly, not through
    tests/inprocess.py, which would reset the state itself."""
    from nerforge.cli.train import main

    args = ["--data_dir", str(corpus), *FAST, "--max_steps", "2", "--calibrate", "false"]
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert main([*args, "--output_dir", str(tmp_path / "a"), "--gradient_accumulation_steps", "2"]) == 0
    first = capsys.readouterr().out
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    assert main([*args, "--output_dir", str(tmp_path / "b")]) == 0
    second = capsys.readouterr().out
    assert "precision bf16" in first and "accumulation): 16" in first
    assert "precision no" in second and "accumulation): 8" in second
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["mixed_precision"] == "no" and metrics["history"][-1]["step"] == 2
