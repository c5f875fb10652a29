"""Every runnable snippet of the docs runs, so that the docs cannot rot.

A snippet is a fenced ``python`` block that the line ``<!-- runnable -->`` immediately
precedes, in ``README.md`` or any page under ``docs/``. Each is a complete program: it
runs with this interpreter in a fresh temporary directory, with the repository's
``src`` and root on ``PYTHONPATH``, and must exit with code 0 within the timeout. Other
code blocks are illustrations and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
TIMEOUT = 60
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*python\s*$")


class Snippet(NamedTuple):
    path: Path
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def extract(path: Path) -> list[Snippet]:
    """The runnable snippets of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening and i > 0 and lines[i - 1].strip() == MARKER:
            indent, fence = opening.group(1), opening.group(2)
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not (
                lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""
            ):
                line = lines[j]
                body.append(line[len(indent) :] if line.startswith(indent) else line)
                j += 1
            if j == len(lines):
                raise AssertionError(f"{path}:{i + 1}: runnable snippet has no closing fence")
            snippets.append(Snippet(path, i + 1, "\n".join(body) + "\n"))
            i = j + 1
        else:
            i += 1
    return snippets


def doc_files() -> list[Path]:
    files = sorted((ROOT / "docs").rglob("*.md"))
    readme = ROOT / "README.md"
    return [readme, *files] if readme.exists() else files


SNIPPETS = [snippet for path in doc_files() for snippet in extract(path)]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{snippet.id}: did not finish within {TIMEOUT} s")
    assert done.returncode == 0, (
        f"{snippet.id} exited with {done.returncode}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_migration_page_has_runnable_snippets() -> None:
    page = ROOT / "docs" / "migrating-from-apscheduler3.md"
    assert len(extract(page)) >= 1


def test_extractor_reads_only_marked_python_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n"
        "```python\nprint('illustration')\n```\n"
        f"{MARKER}\n"
        "```python\nprint('run me')\n```\n"
        f"{MARKER}\n"
        "```sh\necho no\n```\n",
        encoding="utf-8",
    )
    (snippet,) = extract(page)
    assert snippet.line == 6
    assert snippet.code == "print('run me')\n"
