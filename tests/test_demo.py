"""nerforge demo: the page's pure parts, the Space folder, and the page itself in a real browser
(headless Chromium driven by Playwright) against nerforge predict on the same sentence."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version

import pytest
from conftest import ROOT

from nerforge.demo_app import report_tables, tag
from nerforge.space import PINNED, write_space

SENTENCE = "Oren Shalev said Northwind Bank would open an office in Port Ellis ."
CHROMIUM = os.environ.get("NERFORGE_CHROMIUM", "/usr/bin/chromium")


class FakePredictor:
    context_size = 0

    def tag_text(self, lines, paragraphs=False):
        out = []
        for line in lines:
            k = line.find("Ada")
            ents = [{"type": "PER", "text": "Ada", "start": k, "end": k + 3, "score": 0.9}] if k >= 0 else []
            out.append({"text": line, "entities": ents})
        return out


def test_tag_offsets_run_over_lines_and_the_threshold_drops():
    value, rows = tag(FakePredictor(), "Hi Ada\nno one\nAda .", 0.5)
    assert value["text"] == "Hi Ada\nno one\nAda ."
    assert value["entities"] == [{"entity": "PER", "start": 3, "end": 6}, {"entity": "PER", "start": 14, "end": 17}]
    assert all(value["text"][e["start"] : e["end"]] == "Ada" for e in value["entities"])
    assert rows[0] == ["Ada", "PER", 0.9, 3, 6]
    assert tag(FakePredictor(), "Hi Ada", 0.95) == ({"text": "Hi Ada", "entities": []}, [])


def test_report_tables_from_an_export(quickstart_export, tmp_path):
    t = report_tables(quickstart_export)
    metrics = json.loads((quickstart_export / "metrics.json").read_text())
    assert [r[0] for r in t["per_type"]] == [*sorted(metrics["test"]["per_type"]), "all (micro)"]
    assert t["per_type"][-1][3] == round(100 * metrics["test"]["f1"], 2)
    assert t["reliability"] == str(quickstart_export / "calibration.png")
    assert report_tables(tmp_path) is None


def test_space_folder(tmp_path):
    out = write_space(tmp_path / "space", "someone/bert-ner", example="Ada went to Paris .")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio\n" in readme and f"sdk_version: {version('gradio')}\n" in readme
    assert "app_file: app.py" in readme and "- someone/bert-ner" in readme
    reqs = (out / "requirements.txt").read_text().split()
    assert reqs == [f"{name}=={version(name)}" for name in PINNED]
    app = (out / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert "MODEL = 'someone/bert-ner'" in app and "build_app(" in app
    with pytest.raises(ValueError, match="Hub id"):
        write_space(tmp_path / "s2", str(tmp_path))


def test_space_is_pushed_with_the_model(quickstart_export, tmp_path, monkeypatch):
    import huggingface_hub

    from nerforge.cli.push import main

    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("repo", repo_id, kw))
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw)) or "url"
    )
    space = write_space(tmp_path / "space", "me/model")
    args = ["--model", str(quickstart_export), "--hub-model-id", "me/model", "--space-dir", str(space)]
    assert main([*args, "--space-id", "me/model-demo"]) == 0
    assert [(c[0], c[1]) for c in calls] == [
        ("repo", "me/model"),
        ("upload", "me/model"),
        ("repo", "me/model-demo"),
        ("upload", "me/model-demo"),
    ]
    assert calls[2][2]["repo_type"] == "space" and calls[2][2]["space_sdk"] == "gradio"
    assert calls[3][2]["repo_type"] == "space" and calls[3][2]["folder_path"] == str(space)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_in_a_real_browser(quickstart_export, tmp_path, capsys):
    missing = [m for m in ("gradio", "playwright") if not _importable(m)]
    if not os.path.exists(CHROMIUM):
        missing.append(f"Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set NERFORGE_CHROMIUM)")
    if missing:
        pytest.skip("the browser test needs " + ", ".join(missing) + " (pip install 'nerforge[demo]')")
    from playwright.sync_api import sync_playwright

    from nerforge.cli.predict import main as predict

    text = tmp_path / "in.txt"
    text.write_text(SENTENCE + "\n")
    assert predict(["--model", str(quickstart_export), str(text), "--quiet"]) == 0
    expected = [(e["text"], e["type"]) for e in json.loads(capsys.readouterr().out.splitlines()[0])["entities"]]
    assert expected  # the quick-start model finds the sentence's entities

    port = free_port()
    cmd = [sys.executable, "-m", "nerforge", "demo", "--model", str(quickstart_export), "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.time() < deadline, "the demo did not start in 120 s"
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url, wait_until="networkidle")
            page.locator("#nf-text textarea").fill(SENTENCE)
            page.locator("#nf-tag").click()
            tokens = page.locator("#nf-entities .token.highlighted")
            tokens.first.wait_for(timeout=30000)
            page.wait_for_function(
                "n => document.querySelectorAll('#nf-entities .token.highlighted').length === n", arg=len(expected)
            )
            shown = [
                (t.locator(".text").inner_text().strip(), t.locator(".label").inner_text().strip())
                for t in tokens.all()
            ]
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            browser.close()
        assert shown == expected
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None
