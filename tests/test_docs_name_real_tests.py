"""Every test a document names exists (README, PRIVACY.md, docs/, ops/, bench/): a claim that names a test must
name one that runs, or the claim has no proof behind it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "PRIVACY.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "ops").rglob("*.md"),
        *(ROOT / "bench").glob("*.md")]
_NAMED = re.compile(r"\btest_[a-z0-9_]+\b")
# Words of the product that start like a test name: a status field and EU DCC refusal reasons (docs/dcc.md).
NOT_TESTS = frozenset({"test_result", "test_missing", "test_positive", "test_too_old"})


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        names.add(path.stem)  # a test module named in a document
    return names


def test_every_test_a_document_names_exists() -> None:
    defined = _defined_tests()
    missing = sorted(
        f"{doc.relative_to(ROOT)}: {name}"
        for doc in DOCS
        for name in set(_NAMED.findall(doc.read_text("utf-8")))
        if name not in defined and name not in NOT_TESTS
    )
    assert missing == []


def test_the_documents_name_tests_at_all() -> None:
    named = {name for doc in DOCS for name in _NAMED.findall(doc.read_text("utf-8"))}
    assert len(named) > 100  # the check above reads real documents
