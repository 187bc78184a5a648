"""The README is for users: every figure of its results table is read from the committed results file
it names, its commands exist, and it stays short."""

from __future__ import annotations

import json
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def results_rows():
    table = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows if not set(row) <= set("|- ")]


def lookup(obj, path: str):
    for key in path.split("."):
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    return obj


def test_every_figure_of_the_results_table_is_in_the_file_it_names():
    rows = results_rows()
    assert len(rows) >= 5
    for what, figure, source in rows:
        file, paths = re.fullmatch(r"`([^`]+)` `([^`]+)`", source).groups()
        data = json.loads((ROOT / file).read_text(encoding="utf-8"))
        numbers = re.findall(r"\d+(?:\.\d+)?", figure)
        assert len(numbers) == len(paths.split(";")), what
        for shown, path in zip(numbers, paths.split(";")):
            value = float(lookup(data, path.strip()))
            if not figure.endswith("x"):  # F1 and agreement are stored as fractions
                value *= 100
            decimals = len(shown.split(".")[1]) if "." in shown else 0
            assert abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-9, (what, shown, value)


def test_the_readme_is_short_and_its_commands_are_ours():
    assert len(README.splitlines()) <= 200
    from nerforge.cli import COMMANDS

    for name in re.findall(r"\bnerforge ([a-z]+)\b", README):
        assert name in COMMANDS or name in ("never",), name
    assert "python -m nerforge.predict" not in README and "--hub_model_id" not in README
    for doc in re.findall(r"\]\((docs/[a-z]+\.md|LICENSE|BENCHMARKS\.md)\)", README):
        assert (ROOT / doc).is_file(), doc
