"""Real text that every machine with Python has: the standard library's docstrings and the pydoc topics.

Recipes use it as their offline default so that ``python recipes/mlm.py`` trains on real English prose (about
340k words) with no network and no extra package. Other offline corpora used in benchmarks (the KJV Bible,
fortunes) come from Debian packages and are found here too.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

_WS = re.compile(r"\s+")


def cache_dir() -> Path:
    """Where generated corpora are kept (``$HFSSL_CACHE`` or ``~/.cache/hfssl``)."""
    return Path(os.environ.get("HFSSL_CACHE", Path.home() / ".cache" / "hfssl"))


def _paragraphs(text: str) -> list[str]:
    """Split a docstring into paragraphs, joining wrapped lines; drop fragments too short to be prose."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        para = _WS.sub(" ", block).strip()
        if len(para.split()) >= 4:
            out.append(para)
    return out


def _stdlib_docstrings() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    paragraphs: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        # Third-party code and test suites are not the documentation we want.
        if rel[0] in ("site-packages", "dist-packages") or any(p in ("test", "tests", "idle_test") for p in rel):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    paragraphs += _paragraphs(doc)
    return paragraphs


def _pydoc_topics() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        return []
    return [p for key in sorted(topics) for p in _paragraphs(topics[key])]


def _write_atomically(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def python_docs_corpus() -> Path:
    """A text file, one paragraph per line, of this Python's stdlib docstrings and pydoc topics (built once)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    path = cache_dir() / f"python-docs-{version}.txt"
    if not path.is_file():
        _write_atomically(path, _pydoc_topics() + _stdlib_docstrings())
    return path


def bible_corpus() -> Path:
    """The King James Bible, one verse per line, from Debian's ``bible-kjv`` package (``apt-get install bible-kjv``)."""
    path = cache_dir() / "bible-kjv.txt"
    if path.is_file():
        return path
    if shutil.which("bible") is None:
        raise FileNotFoundError("The KJV corpus needs Debian's bible-kjv package: apt-get install -y bible-kjv")
    raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    verses = []
    for line in raw.splitlines():
        # Lines look like "Ge1:1 In the beginning ..." (or "1Co13:4 ..."); keep the verse text only.
        text = re.sub(r"^\s*[1-3]?[A-Za-z]+\d+:\d+\s*", "", line).strip()
        if text:
            verses.append(text)
    return _write_atomically(path, verses)
