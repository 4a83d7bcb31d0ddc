"""Citations of docs/theory.md point at sections that exist, and the document has one spelling.

Every tracked text file (``.py``, ``.md``, ``.ipynb``, ``.toml``, ``.txt``) is
scanned for citations such as ``docs/theory.md section 3``,
``docs/theory.md sections 6 and 7 (c)``, ``docs/theory.md §2``,
``theory.md section 7 (a) and (b)`` or ``section 4.1 of docs/theory.md``. A
section number ``N`` must have a heading ``## N.`` in docs/theory.md, a
subsection ``N.M`` a heading ``### N.M``, and a lettered part ``N (x)`` a
heading ``### N (x)``. Any other capitalization of the document's file name
fails too: the only spelling is ``theory.md``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
SUFFIXES = (".py", ".md", ".ipynb", ".toml", ".txt")

_NUM = r"\d+(?:\.\d+)?(?:\s*\([a-z]\))?(?:\s*(?:and|or|,)\s*\([a-z]\))*"
_LIST = rf"{_NUM}(?:\s*(?:,|and|or|&)\s*(?:§\s*)?{_NUM})*"
_MARK = r"(?:sections?|§{1,2})\s*"
# "theory.md section 3", "theory.md, §7 (c)", "theory.md sections 6 and 7 (c)"
_AFTER = re.compile(rf"\btheory\.md\b[\s,:;(]*{_MARK}(?P<list>{_LIST})", re.IGNORECASE)
# "section 3 of docs/theory.md", "§5 in theory.md"
_BEFORE = re.compile(rf"{_MARK}(?P<list>{_LIST})\s+(?:of|in)\s+(?:the\s+)?(?:docs/)?theory\.md\b", re.IGNORECASE)
# one cited item: a number, optional subsection, optional letters after it
_ITEM = re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<letters>(?:\s*(?:and|or|,)?\s*\([a-z]\))*)")
_LETTER = re.compile(r"\(([a-z])\)")
# the document's file name in any capitalization
_NAME = re.compile(r"\btheory\.md\b", re.IGNORECASE)


def headings(text: str) -> set[str]:
    """Section keys of a theory document: ``"3"`` for ``## 3.``, ``"4.1"`` for ``### 4.1``, ``"7 (c)"`` for ``### 7 (c)``."""
    keys = set()
    for line in text.splitlines():
        m = re.match(r"^##\s+(\d+)\.(?:\s|$)", line)
        if m:
            keys.add(m.group(1))
        m = re.match(r"^###\s+(\d+\.\d+)(?:\s|$)", line)
        if m:
            keys.add(m.group(1))
        m = re.match(r"^###\s+(\d+)\s*\(([a-z])\)", line)
        if m:
            keys.add(f"{m.group(1)} ({m.group(2)})")
    return keys


def cited_sections(line: str) -> list[str]:
    """Section keys a line cites (``"3"``, ``"4.1"``, ``"7 (a)"``; a bare ``N`` also for ``N (x)``)."""
    out = []
    for pattern in (_AFTER, _BEFORE):
        for m in pattern.finditer(line):
            for item in _ITEM.finditer(m.group("list")):
                num = item.group("num")
                out.append(num)
                out.extend(f"{num} ({x})" for x in _LETTER.findall(item.group("letters")))
    return out


def scan(text: str, sections: set[str], path: str = "<text>") -> list[str]:
    """Problems in ``text``: citations of missing sections and misspelt file names, as ``path:line: ...``."""
    problems = []
    for i, line in enumerate(text.replace("\\u00a7", "§").splitlines(), 1):
        for key in cited_sections(line):
            if key not in sections:
                problems.append(f"{path}:{i}: cites theory.md section {key!r}, which has no heading")
        for m in _NAME.finditer(line):
            if m.group(0) != "theory.md":
                problems.append(f"{path}:{i}: {m.group(0)!r}: the theory document is docs/theory.md")
    return problems


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    names = [n for n in out.decode().split("\0") if n.endswith(SUFFIXES)]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


# ----------------------------------------------------------------------------- the scanner itself

DOC = "\n".join(["# T", "## 1. Setting", "## 3. Lambert", "### 4.1 Ties", "## 4. Other", "## 7. Lag", "### 7 (a) X", "### 7 (c) Y"])
NAME = "docs/theory" + ".md"  # built, so that this file's own lines are not citations


def test_headings_parse_sections_subsections_and_parts():
    assert headings(DOC) == {"1", "3", "4", "4.1", "7", "7 (a)", "7 (c)"}
    assert headings("## 12. Twelve\n##3. no space\n## 5 no dot\n#### 6. too deep") == {"12"}


@pytest.mark.parametrize(
    "line, keys",
    [
        (f"see {NAME} section 3.", ["3"]),
        (f"({NAME} §3)", ["3"]),
        (f"{NAME} sections 6 and 7 (c): the", ["6", "7", "7 (c)"]),
        (f"{NAME} section 7 (a) and (b). With", ["7", "7 (a)", "7 (b)"]),
        (f"{NAME}, section 4.1", ["4.1"]),
        (f"{NAME} §§1, 3", ["1", "3"]),
        (f"section 5 of {NAME}", ["5"]),
        (f"names follow {NAME}:", []),
        (f"(README, {NAME}).", []),
        ("section 3 of the README", []),
    ],
)
def test_cited_sections_reads_every_form(line, keys):
    assert cited_sections(line) == keys


def test_scan_flags_a_missing_section_by_file_and_line():
    text = f"ok: {NAME} section 3\nbad: {NAME} section 9\nbad part: {NAME} §7 (b)\n"
    problems = scan(text, headings(DOC), "x.py")
    assert problems == [
        "x.py:2: cites theory.md section '9', which has no heading",
        "x.py:3: cites theory.md section '7 (b)', which has no heading",
    ]


def test_scan_flags_any_other_spelling_of_the_file_name():
    other = "theory".upper() + ".md"
    problems = scan(f"fine: {NAME}\nold: ({other} section 3)\n", headings(DOC), "n.md")
    assert problems == [f"n.md:2: {other!r}: the theory document is docs/theory.md"]


def test_scan_reads_escaped_section_signs_in_notebook_json():
    problems = scan(f'    "({NAME} \\u00a79)\\n",', headings(DOC), "n.ipynb")
    assert problems == ["n.ipynb:1: cites theory.md section '9', which has no heading"]


# ----------------------------------------------------------------------------- the repository


def test_the_theory_document_has_sections_1_to_8():
    assert {str(n) for n in range(1, 9)} <= headings(THEORY.read_text(encoding="utf-8"))


def test_every_citation_in_the_repository_points_at_a_section():
    sections = headings(THEORY.read_text(encoding="utf-8"))
    problems = []
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        problems += scan(text, sections, str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)
