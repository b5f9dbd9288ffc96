"""Where code may live: SQL only in storage/, and storage/ imports nothing of ours above it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The issue's own check: statements (and words in capitals that read like them).
_SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM)\b")
_ABOVE_STORAGE = re.compile(r"^\s*(from|import)\s+(homeserver|federation|e2ee)\b", re.M)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_no_sql_outside_storage():
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("homeserver", "federation", "e2ee")
        for path in _sources(package)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _SQL.search(line)
    ]
    assert found == []


def test_storage_imports_nothing_above_it():
    found = [
        str(path.relative_to(ROOT))
        for path in _sources("storage")
        if _ABOVE_STORAGE.search(path.read_text())
    ]
    assert found == []


def test_membership_sql_is_written_once():
    """Member rows of current state are read in storage/membership.py alone; other stores
    join on its subqueries."""
    member_sql = re.compile(r"type\s*=\s*'m\.room\.member'")
    found = [
        str(path.relative_to(ROOT))
        for path in _sources("storage")
        if member_sql.search(path.read_text())
    ]
    # Erasure reads the user's own member *events* (the events table), not membership.
    assert found == ["storage/housekeeping.py", "storage/membership.py"]
