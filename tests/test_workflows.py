"""The GitHub Actions workflows (they cannot run here): each parses, runs the README's
commands, and the book workflow deploys what `make book` builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(job: dict) -> list[dict]:
    return job["steps"]


def runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def readme_command(target: str) -> str:
    """The README's ``make <target>`` line of its three commands."""
    block = re.search(
        r"## Three commands\n+```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert block, "the README lost its three commands"
    lines = [ln.split("#")[0].strip() for ln in block.group(1).splitlines()]
    return next(ln for ln in lines if ln.startswith(f"make {target}"))


@pytest.mark.parametrize("name", ["test.yml", "book.yml"])
def test_each_workflow_parses_pins_its_actions_and_has_a_time_limit(name):
    data = workflow(name)
    assert data["on"] and data["jobs"]
    for job in data["jobs"].values():
        assert job["runs-on"].startswith("ubuntu-")
        for step in steps(job):
            assert "uses" in step or "run" in step, step
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
    assert all(
        job.get("timeout-minutes", 0) <= 90 for job in data["jobs"].values() if "steps" in job
    )


def test_the_test_workflow_runs_the_readmes_test_command_on_every_push():
    data = workflow("test.yml")
    assert "push" in data["on"] and "pull_request" in data["on"]
    (job,) = data["jobs"].values()
    assert readme_command("test") in runs(job)
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in steps(job))


def test_the_book_workflow_builds_with_make_book_and_deploys_that_folder_to_pages():
    data = workflow("book.yml")
    assert data["on"]["push"]["branches"] == ["main"]
    assert data["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = data["jobs"]["build"], data["jobs"]["deploy"]
    assert readme_command("book") in runs(build)
    makefile = (ROOT / "Makefile").read_text()
    out = re.search(r"^BOOK\s*\?=\s*(\S+)", makefile, re.M).group(1)
    upload = next(s for s in steps(build) if s.get("uses", "").startswith("actions/upload-pages"))
    assert upload["with"]["path"] == f"{out}/_build/html"
    assert deploy["needs"] == "build"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in steps(deploy))
