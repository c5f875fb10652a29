"""A griffe extension that renders the reST markup of horae's docstrings as Markdown.

The docstrings are Google style (Args/Returns/Raises sections) but keep two pieces of
reST that read well in ``help()`` and an editor: cross-reference roles
(``:class:`Job```, ``:meth:`~AsyncScheduler.add_job```) and literal blocks introduced by
a line ending in ``::``. Before mkdocstrings renders a docstring, this turns each role
into an optional autorefs link (a link when the name resolves to a documented object,
plain code otherwise; never a build warning) and each literal block into a fenced code
block. Loaded from mkdocs.yml (``extensions:`` of the python handler).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"^(?P<indent>[ \t]*)(?P<text>.*?)::[ \t]*$")


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """The path of the object ``name`` means in the docstring of ``obj``, or None."""
    scopes: list[griffe.Object] = []
    scope: griffe.Object | None = obj
    while scope is not None:
        scopes.append(scope)
        scope = scope.parent
    candidates = [f"{s.path}.{name}" for s in scopes if not s.is_function]
    candidates += [name, f"horae.{name}"]
    root = obj.package
    for candidate in candidates:
        if candidate != root.path and not candidate.startswith(root.path + "."):
            continue
        try:
            target = root[candidate[len(root.path) + 1 :]] if candidate != root.path else root
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return str(target.final_target.path) if target.is_alias else str(target.path)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return str(target.path)
    return None


def _roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        short, name = match[1] == "~", match[2].strip()
        title = name.rsplit(".", 1)[-1] if short else name
        code = f"<code>{title}</code>"
        path = _resolve(obj, name)
        if path is None:
            return f"`{title}`"
        return f'<autoref identifier="{path}" optional>{code}</autoref>'

    return _ROLE.sub(replace, text)


def _literal_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _LITERAL.match(lines[i])
        if not match or lines[i].lstrip().startswith(("```", ">>>")):
            out.append(lines[i])
            i += 1
            continue
        indent, lead = match["indent"], match["text"].rstrip()
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block: list[str] = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(indent)
        ):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
        if not block:
            out.append(lines[i])
            i += 1
            continue
        width = min(len(b) - len(b.lstrip()) for b in block if b.strip())
        body = [b[width:] if b.strip() else "" for b in block]
        example = lead.lower() in ("example", "examples")
        language = "python" if example or _looks_python(body) else "text"
        if example:
            # A Google-style "Example:" section: its indented content is rendered.
            out.append(f"{indent}{lead}:")
            inner = indent + "    "
        else:
            out.append(f"{indent}{lead}:" if lead else "")
            out.append("")
            inner = indent
        out.append(f"{inner}```{language}")
        out.extend(f"{inner}{b}" if b else "" for b in body)
        out.append(f"{inner}```")
        if j < len(lines):
            out.append("")
        i = j
    return "\n".join(out)


_PYTHON_START = re.compile(r"(from |import |async |await |def |class |@|\w+(\.\w+)*\(|\w+ = )")


def _looks_python(body: list[str]) -> bool:
    first = next((b for b in body if b.strip()), "")
    return bool(_PYTHON_START.match(first))


class ReSTMarkup(griffe.Extension):
    """Rewrites reST roles and literal blocks in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._visit(pkg, set())

    def _visit(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _roles(obj, _literal_blocks(obj.docstring.value))
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, seen)  # type: ignore[arg-type]
