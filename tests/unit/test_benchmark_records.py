"""A benchmark's record (``benchmarks/_common.run_recorded``): kept when a target is missed, and
kept, marked incomplete, with the rows measured so far when a later row raises; none for --help."""

import sys

import pytest

from benchmarks import _common


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(_common, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench.py", "--out", str(tmp_path / "none.parquet")])
    return tmp_path / "results"


def test_a_run_that_raises_keeps_the_rows_it_printed_marked_incomplete(results):
    def main():
        print('{"row": 1, "wall_s": 3.5}')
        raise RuntimeError("row 2 failed: worker died")

    with pytest.raises(RuntimeError, match="row 2 failed"):
        _common.run_recorded("bench", main, "none.parquet")
    (record,) = results.glob("bench-*-incomplete.md")
    text = record.read_text()
    assert '{"row": 1, "wall_s": 3.5}' in text and "INCOMPLETE" in text and "RuntimeError: row 2 failed: worker died" in text


def test_a_missed_target_keeps_its_record_and_exit_status(results):
    def main():
        print("ratio 0.8 (target <= 0.5): missed")
        return 1

    assert _common.run_recorded("bench", main, "none.parquet") == 1
    (record,) = results.glob("bench-*.md")
    assert "incomplete" not in record.name and "ratio 0.8" in record.read_text()


def test_help_or_a_refused_command_line_writes_no_record(results):
    def main():
        raise SystemExit(2)  # what argparse raises for a command line it refuses (0 for --help)

    with pytest.raises(SystemExit):
        _common.run_recorded("bench", main, "none.parquet")
    assert not list(results.glob("bench-*"))


def _square_unless_three(path, add):
    if path.stem == "three":
        raise ValueError("a trial id it did not hold")
    return int(path.stem == "two") * 10 + add


def test_a_table_that_raises_leaves_the_others_kept_as_each_ends(tmp_path):
    from pathlib import Path

    paths = [Path(f"{name}.parquet") for name in ("one", "two", "three", "four")]
    kept = {}
    with pytest.raises(_common.TablesFailed, match="three: ValueError") as failed:
        _common.per_table(_square_unless_three, paths, 2, 1, on_done=lambda p, r: kept.setdefault(p.stem, r))
    assert kept == {"one": 1, "two": 11, "four": 1} and failed.value.done == [1, 11, 1]
    assert _common.per_table(_square_unless_three, paths[:2], 2, 5) == [5, 15]
