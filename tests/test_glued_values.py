"""Every value the book glues at the default profile is the committed one
(``tests/glued_default.json``, written by ``scripts/glued_values.py``): a refactor changes no
number, label or sentence the book shows. Committing runs, or changing a page on purpose, means
writing that file again in the same commit. Executes each notebook once (about a minute)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "glued_values", ROOT / "scripts" / "glued_values.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_glued_value_of_the_default_book_is_the_committed_one():
    expected = json.loads((ROOT / "tests" / "glued_default.json").read_text())
    found = load_script().values()
    assert sorted(found) == sorted(expected), "a notebook was added or removed"
    diffs = [
        f"{nb} {key}: {expected[nb].get(key)!r} -> {found[nb].get(key)!r}"
        for nb in expected
        for key in sorted(set(expected[nb]) | set(found[nb]))
        if expected[nb].get(key) != found[nb].get(key)
    ]
    assert diffs == [], "\n".join(diffs[:20])
