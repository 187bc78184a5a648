"""The README "Reliability" block is generated from the figures the reliability tests record; this
fails when the committed block differs from them (run `python tests/reliability_report.py`).
Named zz so that it runs after the tests that record figures."""

from __future__ import annotations

import re

import pytest
import reliability_report as rr


def test_readme_block_is_not_stale():
    figures = rr.load_figures()
    if not figures:
        pytest.skip(f"no figures recorded yet ({rr.figures_path()}): run the reliability tests first")
    text = rr.README.read_text(encoding="utf-8") if rr.README.exists() else ""
    block = rr.current_block(text)
    assert block is not None, "README.md has no reliability block: run python tests/reliability_report.py"

    # The number of log lines scanned for the token depends on how often progress bars redrew: not a
    # figure that can go stale, so it is not compared.
    def stable(b):
        return re.sub(r"\d+ log lines", "N log lines", b)

    rendered = rr.render(figures)
    if rendered.count("\n| ") != block.count("\n| "):
        pytest.skip("this session recorded a different set of figures (a partial run, e.g. -m 'not slow')")
    assert stable(block) == stable(rendered), (
        "README reliability block is stale compared to the figures this suite "
        "recorded: run python tests/reliability_report.py and commit README.md"
    )


def test_block_rewrite_touches_nothing_else(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    monkeypatch.setattr(rr, "README", readme)
    readme.write_text("# nerforge\n\nintro\n", encoding="utf-8")
    rr.write_readme(rr.render({}))
    first = readme.read_text(encoding="utf-8")
    assert first.startswith("# nerforge\n\nintro\n\n" + rr.BEGIN) and first.endswith(rr.END + "\n")
    readme.write_text(first + "\n## After\n\nkept\n", encoding="utf-8")
    figures = {"secrets": {"hits": 0, "files": 3, "log_lines": 9}}
    rr.write_readme(rr.render(figures))
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# nerforge\n\nintro\n\n") and text.endswith(rr.END + "\n\n## After\n\nkept\n")
    assert rr.current_block(text) == rr.render(figures) and "| 0 (scanned 3 files, 9 log lines) |" in text
