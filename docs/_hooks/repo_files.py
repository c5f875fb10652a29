"""An MkDocs hook that publishes the repository files the pages link to.

Pages link to files outside docs/ with relative paths (``../examples/flask_app.py``),
which work when the Markdown is read in the repository but point nowhere in the built
site. This hook gives each such file a generated page in the site (its text in a code
block, under ``repo/``) and a linked folder a page listing its files, and rewrites the
links to them. Loaded from mkdocs.yml (``hooks:``).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")
_SKIP = ("__pycache__", ".pyc")
_LANGUAGES = {".py": "python", ".toml": "toml", ".yml": "yaml", ".yaml": "yaml", ".sh": "bash"}


def _repo_root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _target(config: Any, src_uri: str, link: str) -> str | None:
    """The repository path (posix) that ``link`` in page ``src_uri`` names outside docs/."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("/"):
        return None
    root = _repo_root(config)
    docs = Path(config["docs_dir"]).resolve().relative_to(root).as_posix()
    path = posixpath.normpath(posixpath.join(docs, posixpath.dirname(src_uri), link))
    if path == docs or path.startswith(("../", docs + "/")):
        return None
    return path if (root / path).exists() else None


def _page_uri(path: str, is_dir: bool) -> str:
    return f"repo/{path}/index.md" if is_dir else f"repo/{path}.md"


def _file_page(root: Path, path: str) -> str:
    text = (root / path).read_text(encoding="utf-8")
    language = _LANGUAGES.get(Path(path).suffix, "text")
    fence = "````" if "```" in text else "```"
    return f"# {path}\n\n{fence}{language}\n{text.rstrip()}\n{fence}\n"


def _dir_page(root: Path, path: str, entries: list[str]) -> str:
    lines = [f"# {path}/", ""]
    lines += [f"- [{Path(e).name}]({Path(e).name}.md)" for e in entries]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: Any) -> Files:
    root = _repo_root(config)
    wanted: set[str] = set()
    for file in list(files.documentation_pages()):
        for match in _LINK.finditer(Path(file.abs_src_path or "").read_text(encoding="utf-8")):
            target = _target(config, file.src_uri, match[2])
            if target is not None:
                wanted.add(target)
    for path in sorted(wanted):
        if (root / path).is_dir():
            entries = sorted(
                f"{path}/{p.name}"
                for p in (root / path).iterdir()
                if p.is_file() and not p.name.endswith(_SKIP) and not p.name.startswith(".")
            )
            files.append(
                File.generated(
                    config,
                    _page_uri(path, True),
                    content=_dir_page(root, path, entries),
                    inclusion=InclusionLevel.NOT_IN_NAV,
                )
            )
            wanted_files = [e for e in entries if e not in wanted]
        else:
            wanted_files = [path]
        for entry in wanted_files:
            uri = _page_uri(entry, False)
            if files.get_file_from_path(uri) is None:
                files.append(
                    File.generated(
                        config,
                        uri,
                        content=_file_page(root, entry),
                        inclusion=InclusionLevel.NOT_IN_NAV,
                    )
                )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    src_uri = page.file.src_uri
    if src_uri.startswith("repo/"):
        return markdown

    def replace(match: re.Match[str]) -> str:
        target = _target(config, src_uri, match[2])
        if target is None:
            return match[0]
        uri = _page_uri(target, (_repo_root(config) / target).is_dir())
        relative = posixpath.relpath(uri, posixpath.dirname(src_uri) or ".")
        return f"{match[1]}{relative}{match[3] or ''}{match[4]}"

    return _LINK.sub(replace, markdown)
