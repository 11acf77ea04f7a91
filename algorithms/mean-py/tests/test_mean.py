"""mean-py's reading of the data and combining, against files, as algorithms/mean reads them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(HERE.parent), str(ROOT / "python" / "warden_algorithm")]
import mean  # noqa: E402
from warden_algorithm import Organization, SubtaskResult  # noqa: E402


def test_cells_are_read_as_the_rust_parser_reads_them():
    for cell, v in [("1", 1.0), (" 2.5 ", 2.5), ("-3e2", -300.0), (".5", 0.5), ("+4", 4.0)]:
        assert mean.parse_number(cell) == v
    for cell in ["", "  ", "inf", "-inf", "nan", "NaN", "1_000", "١٢", "0x10", "abc", "1e999"]:
        assert mean.parse_number(cell) is None, cell


def test_column_stats_skips_what_is_not_a_number_and_refuses_bad_tables(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(" id , age \n1, 30\n2,\n\n3,x\n4,12.5\n")
    assert mean.column_stats(f, "age") == {"sum": 42.5, "count": 2, "skipped": 2}
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(ValueError, match="without data.csv"):
        mean.table_file(d)
    (d / "data.csv").write_text("age\n1\n")
    assert mean.table_file(d) == d / "data.csv"
    cases = [("", "no header row"), ("age,age\n1,2\n", "more than once"),
             ("age,b\n1,2,3\n", "record 2 has 3 fields"), ("a\n1\n", "no column 'age'")]
    for text, needle in cases:
        f.write_text(text)
        with pytest.raises(ValueError, match=needle):
            mean.column_stats(f, "age")
    # A compensated sum: 1e16 + 1 + -1e16 is 1, not 0.
    f.write_text("age\n1e16\n1\n-1e16\n")
    assert mean.column_stats(f, "age")["sum"] == 1.0


def run(org, state="completed", result=b'{"sum": 10.0, "count": 4, "skipped": 0}', reason=None):
    return SubtaskResult(organization_id=org, state=state, result=result, reason=reason)


def test_gather_combines_and_names_every_problem():
    a, b = Organization(1, "a"), Organization(2, "b")
    assert mean.gather([a, b], [run(1), run(2)]) == {"mean": 2.5, "count": 8, "organizations": 2}
    with pytest.raises(ValueError) as e:
        mean.gather([a, b], [run(1, "rejected", None, "denied"), run(1), run(3),
                             run(2, result=b'{"sum": 1}')])
    text = str(e.value)
    assert "organization 1 (a): 2 runs were reported" in text
    assert "organization 2 (b): its result is not a partial mean" in text
    assert "organization 3: a run was reported but the subtask was not sent there" in text
    with pytest.raises(ValueError, match="no run was reported"):
        mean.gather([a], [])
    with pytest.raises(ValueError, match="rejected: denied"):
        mean.gather([a], [run(1, "rejected", None, "denied")])
    with pytest.raises(ValueError, match="no organization had a numeric value"):
        mean.gather([a], [run(1, result=b'{"sum": 0.0, "count": 0, "skipped": 3}')])
    assert mean.select([a, b], None) == [a, b] and mean.select([a, b], [2]) == [b]
    for listed, needle in [([], "is empty"), ([1, 1], "listed twice"), ([9], "not in the collaboration")]:
        with pytest.raises(ValueError, match=needle):
            mean.select([a, b], listed)
