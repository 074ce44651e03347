"""Malformed and hostile specs: `candle-lab validate` answers each in under a second with
a message naming the field, never a traceback, and refuses what `run` would refuse."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from malformed import CASES, Case

from candle_lab import cli


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_names_the_field_in_under_a_second(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = case.write(tmp_path)
    start = time.perf_counter()
    code = cli.main(["validate", str(path)])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert case.field in err, err
    assert "Traceback" not in err and len(err) < 5_000, err[:2000]
    assert elapsed < 1.0, f"{case.name}: {elapsed:.2f} s"
