"""The README's own-training-loop example runs and keeps the non-zero count fixed."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_reallocates():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("step ") for line in lines) == 2  # steps 100 and 200
    assert float(lines[-1]) == 0.1
