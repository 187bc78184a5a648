"""The package as users install it: a wheel built from the repository, installed in a fresh virtual
environment, used from a folder outside the checkout (no repository files to lean on)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest
from conftest import ROOT

# Run inside the fresh environment, from a temporary folder: a tiny export with a rendered card, the
# bundled sample corpus read through the loader.
INSIDE = textwrap.dedent("""
    import json, sys
    from importlib.resources import files
    from pathlib import Path

    import conll2003_loader, nerforge
    from nerforge.card import DEFAULT_TEMPLATE, render_model_card
    from nerforge.cli.train import parse_config
    from nerforge.modeling import build_tiny_bert

    sample = files("nerforge") / "sample_data"
    splits = conll2003_loader.load_splits(data_dir=str(sample), cache_dir="cache")
    names = splits["train"].features["ner_tags"].feature.names
    words = [w for s in splits["train"]["tokens"][:50] for w in s] + ["Mara", "Lindqvist", "said", "."]
    export = build_tiny_bert(words, names, "export", seed=0)
    cfg = parse_config(["--tiny_model", "--dataset_name", "nerforge-sample"])
    metrics = {"validation": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "accuracy": 0.9}}
    card = render_model_card(export, cfg, metrics=metrics, label_names=names)
    print(json.dumps({
        "nerforge": nerforge.__file__, "loader": conll2003_loader.__file__, "template": str(DEFAULT_TEMPLATE),
        "template_is_link": DEFAULT_TEMPLATE.is_symlink(), "sizes": {k: len(v) for k, v in splits.items()},
        "card_f1": [r.metric_value for r in card.data.eval_results if r.metric_type == "f1"],
        "readme": (Path(export) / "README.md").is_file(),
    }))
""")


@pytest.mark.slow
def test_wheel_installs_trains_the_quick_start_and_predicts_outside_the_checkout(tmp_path):
    # Built from a copy of the source tree: an in-place build would leave build/ behind, whose stale
    # files a later build could pack.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "outputs", "*.egg-info", "__pycache__", "data")
    shutil.copytree(ROOT, src, symlinks=True, ignore=skip)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run(build, check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("nerforge-*.whl")

    # A fresh environment that gets nerforge from the wheel only; the heavy dependencies (torch,
    # transformers, ...) are borrowed from this environment through a .pth line, so that nothing is
    # downloaded. A path line adds a folder without running the .pth files in it, so the editable
    # install of the checkout stays out.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    fresh_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    borrowed = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (tmp_path / "venv" / fresh_site / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, text=True, timeout=300)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    p = subprocess.run([str(py), "-c", INSIDE], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    for key in ("nerforge", "loader", "template"):
        assert got[key].startswith(str(venv)) and not got[key].startswith(str(ROOT)), got
    assert not got["template_is_link"] and got["readme"] and got["card_f1"] == [pytest.approx(1 / 3)]
    assert got["sizes"]["train"] > 100 and got["sizes"]["validation"] > 10 and got["sizes"]["test"] > 10

    (work / "in.txt").write_text("Mara Lindqvist said .\n\nMara said .\n")
    predict = [str(py), "-m", "nerforge.predict", "--model", "export", "in.txt"]
    p = subprocess.run(predict, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["text"] for r in lines] == ["Mara Lindqvist said .", "", "Mara said ."]
    assert all(isinstance(r["entities"], list) for r in lines)

    # The console command from the wheel: help, then the quick start trained from an empty folder by its
    # bundled name, predicted and scored.
    nerforge = venv / "bin" / "nerforge"
    assert nerforge.is_file()
    p = subprocess.run([str(nerforge), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and all(c in p.stdout for c in ("train", "predict", "score", "onnx", "push", "data"))
    p = subprocess.run([str(nerforge), "train", "--help"], cwd=work, env=env, capture_output=True, text=True)
    assert p.returncode == 0 and "--config" in p.stdout and "examples:" in p.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    train = [str(nerforge), "train", "--config", "quickstart", "--report-to", "none", "--max-steps", "30"]
    p = subprocess.run(train, cwd=empty, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    export = empty / "outputs" / "quickstart" / "model"
    assert "exported to outputs/quickstart/model" in p.stdout
    assert {"model.safetensors", "README.md", "training_config.yaml", "metrics.json"} <= {
        f.name for f in export.iterdir()
    }
    (empty / "in.txt").write_text("Mara Lindqvist said Northwind Bank would open an office in Port Ellis .\n")
    predict = [str(nerforge), "predict", "--model", str(export), "in.txt", "--quiet"]
    p = subprocess.run(predict, cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["text"].startswith("Mara Lindqvist")
    score = [str(nerforge), "score", "--model", str(export), "--data-dir", "bundled:sample", "--quiet"]
    p = subprocess.run(score, cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads(p.stdout)
    assert metrics["num_sentences"] == got["sizes"]["test"] and 0 <= metrics["f1"] <= 1
    assert sorted(f.name for f in empty.iterdir()) == ["in.txt", "outputs"]
