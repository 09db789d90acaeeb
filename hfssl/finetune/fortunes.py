"""A real labelled text-classification task that works offline: which ``fortune`` file a quotation comes from.

Debian's ``fortunes`` package ships quotations sorted by hand into topic files (``computers``, ``food``, ``law``,
``politics``, ...) under ``/usr/share/games/fortunes``; entries are separated by lines holding a single ``%``.
The label of an entry is the file it was filed in by the fortune maintainers, so the labels are human
annotations, not generated ones. The default four topics have distinct vocabularies but the quotations are
short and witty, so the task rewards a model that knows English, which is what pretraining should give.

How the dataset is built (deterministic, independent of file order and of the machine):

* each entry has backspace overstrikes removed and its whitespace collapsed; entries under 4 words are dropped;
* an entry filed under two of the chosen topics is ambiguous and dropped from both;
* the split comes from the SHA-1 of the text: digest mod 10 == 0 -> test, == 1 -> validation, else train
  (about 80/10/10), so an entry stays in its split when categories are added or the package is updated.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..data.offline_corpus import cache_dir
from ..data.text import DataError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DEFAULT_CATEGORIES = ("computers", "food", "law", "politics")
_OVERSTRIKE = re.compile(r".\x08")
_WS = re.compile(r"\s+")


def read_fortunes(path: Path) -> list[str]:
    """Entries of one fortune file, cleaned (overstrikes removed, whitespace collapsed, ≥ 4 words)."""
    # A few files carry Latin-1 bytes; replacing them keeps the entry and its neighbours.
    raw = path.read_text(encoding="utf-8", errors="replace")
    entries = []
    for block in re.split(r"^%\s*$", raw, flags=re.MULTILINE):
        text = _WS.sub(" ", _OVERSTRIKE.sub("", block)).strip()
        if len(text.split()) >= 4:
            entries.append(text)
    return entries


def split_of(text: str) -> str:
    """train / validation / test from the text's SHA-1, so the split never depends on order."""
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def build_fortunes_task(categories: list[str] | tuple[str, ...] = DEFAULT_CATEGORIES, *,
                        fortunes_dir: str | Path = FORTUNES_DIR, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``train/validation/test.jsonl`` (``{"text", "label"}`` rows) and return their paths by split."""
    fortunes_dir = Path(fortunes_dir)
    categories = list(dict.fromkeys(categories))
    if len(categories) < 2:
        raise DataError(f"--fortune_categories needs at least two categories, got {categories}.")
    missing = [c for c in categories if not (fortunes_dir / c).is_file()]
    if missing:
        available = sorted(p.name for p in fortunes_dir.glob("*") if p.is_file() and "." not in p.name) if fortunes_dir.is_dir() else []
        hint = (f"Available: {available}." if available else
                "Install Debian's fortunes package (apt-get install fortunes) or pass --train_file/--task_name.")
        raise DataError(f"No fortune file for {missing} in {fortunes_dir}. {hint}")

    owners: dict[str, set[str]] = {}
    for category in categories:
        for text in read_fortunes(fortunes_dir / category):
            owners.setdefault(text, set()).add(category)
    rows: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "test": []}
    for text in sorted(owners):  # sorted: the files' bytes don't depend on dict order
        if len(owners[text]) == 1:
            rows[split_of(text)].append({"text": text, "label": next(iter(owners[text]))})

    out_dir = Path(out_dir) if out_dir else cache_dir() / "fortunes-task" / "-".join(sorted(categories))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, split_rows in rows.items():
        path = out_dir / f"{split}.jsonl"
        tmp = path.with_suffix(f".tmp{os.getpid()}")  # atomic: several processes may build at once
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split_rows), encoding="utf-8")
        os.replace(tmp, path)
        paths[split] = path
    return paths




def fortunes_text_corpus(exclude: list[str] | tuple[str, ...] = DEFAULT_CATEGORIES, *,
                         fortunes_dir: str | Path = FORTUNES_DIR, out_path: str | Path | None = None) -> Path:
    """Unlabelled pretraining text: every fortune file except ``exclude`` (the task's classes), one entry per line.

    Pretraining on it is in-domain (same register: short, witty English) yet carries no label information and
    shares no text with the task's splits, since entries filed under an excluded category are dropped everywhere.
    """
    fortunes_dir = Path(fortunes_dir)
    excluded_texts = {t for c in exclude if (fortunes_dir / c).is_file() for t in read_fortunes(fortunes_dir / c)}
    files = sorted(p for p in fortunes_dir.glob("*") if p.is_file() and "." not in p.name and p.name not in exclude)
    if not files:
        raise DataError(f"No fortune files in {fortunes_dir}. Install Debian's fortunes package (apt-get install fortunes).")
    lines = sorted({t for p in files for t in read_fortunes(p)} - excluded_texts)
    out_path = Path(out_path) if out_path else cache_dir() / f"fortunes-without-{'-'.join(sorted(exclude))}.txt"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out_path)
    return out_path


__all__ = ["DEFAULT_CATEGORIES", "FORTUNES_DIR", "build_fortunes_task", "fortunes_text_corpus", "read_fortunes", "split_of"]
