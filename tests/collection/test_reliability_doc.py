"""docs/reliability.md: its fault table has one row per fault of the fault suite, in order, and
every test it names exists (a test renamed or removed must take its row along)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
FAULTS = 15
ROW = re.compile(r"^\| (\d+) \|(.*)\|$")
TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def table_rows(doc: Path = DOC) -> dict[int, list[str]]:
    rows = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line.strip())
        if match:
            number = int(match.group(1))
            assert number not in rows, f"fault {number} has two rows"
            rows[number] = [cell.strip() for cell in match.group(2).split(" | ")]
    return rows


def test_fault_table_has_a_row_per_fault_with_end_state_and_tests():
    rows = table_rows()
    assert sorted(rows) == list(range(1, FAULTS + 1))
    for number, cells in rows.items():
        assert len(cells) == 3 and all(cells), (number, cells)  # fault, expected end state, test
        assert TEST.search(cells[2]), f"fault {number}: no `tests/...py::test_name` in {cells[2]!r}"


def missing_tests(doc: Path = DOC) -> list[str]:
    """The tests the table names that do not exist, as "<fault>: <path>[::<name>]"."""
    missing = []
    for number, cells in table_rows(doc).items():
        for path, name in TEST.findall(cells[2]):
            source = ROOT / path
            if not source.is_file():
                missing.append(f"{number}: {path}")
                continue
            defined = {node.name for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                       if isinstance(node, ast.FunctionDef)}
            if name not in defined:
                missing.append(f"{number}: {path}::{name}")
    return missing


def test_every_test_named_in_the_table_exists():
    assert missing_tests() == []


def test_the_table_check_itself_finds_a_missing_test(tmp_path):
    """The check above reads what it claims to: a row naming a test that does not exist is found."""
    fake = tmp_path / "reliability.md"
    fake.write_text(DOC.read_text(encoding="utf-8").replace("::test_06_", "::test_06_renamed_", 1), encoding="utf-8")
    assert [m for m in missing_tests(fake) if "test_06_renamed_" in m and m.startswith("6: ")]
