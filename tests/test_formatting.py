"""One number formatter for the terminal, report tables and findings; lines cut to the terminal's width."""

import itertools
import math

import numpy as np
import pytest

from resbench.formatting import number, wrap_spans


def test_numbers_read_alike_everywhere() -> None:
    assert [number(v) for v in (None, math.nan, np.float64(np.nan), 12345, np.int64(7), 0.123456)] == [
        "—", "—", "—", "12345", "7", "0.123"]
    assert number(math.inf) == "inf" and number(-math.inf, infinity="∞") == "-∞"
    assert number(1.23456789, 4) == "1.235" and number("n/a") == "n/a"


def lines_of(text: str, width: int, indent: int = 0) -> list[str]:
    return [" " * pad + text[start:end] for start, end, pad in wrap_spans(text, width, indent)]


def test_lines_break_between_words_and_a_path_only_beside_a_slash() -> None:
    text = "3 completed · runs.csv: /results/sweeps/2025-01-01_12-00-00_000001/runs.csv"
    assert lines_of(text, 80) == [text]
    assert lines_of(text, 30) == ["3 completed · runs.csv:", "/results/sweeps/",
                                  "2025-01-01_12-00-00_000001/", "runs.csv"]
    assert lines_of("ab /cd/" + "e" * 10 + "/f", 10) == ["ab", "/cd/", "eeeeeeeeee", "/f"]  # a cut before a /
    assert lines_of("x " + "n" * 12, 8) == ["x", "nnnnnnnn", "nnnn"]  # no slash: cut where the line ends


@pytest.mark.parametrize("width", [14, 20, 33, 80])
def test_every_line_fits_and_every_cut_is_at_a_space_or_beside_a_slash(width: int) -> None:
    text = "To settle: resbench sweep --resume /tmp/some/where/sweep  depth=6,12,24 seed=0,1,2"
    spans = wrap_spans(text, width, indent=4)
    assert all(end - start + pad <= width for start, end, pad in spans)
    assert "".join(text[start:end] for start, end, _ in spans).replace(" ", "") == text.replace(" ", "")
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert text[end:start].strip() == "" and (start > end or "/" in (text[end - 1], text[start])), (end, start)


def test_continuation_lines_are_indented_unless_a_word_needs_the_whole_line() -> None:
    assert lines_of("alpha beta gamma delta", 12, indent=2) == ["alpha beta", "  gamma", "  delta"]
    assert lines_of("see /a-rather-long-name/x", 20, indent=4) == ["see", "/a-rather-long-name/", "    x"]
    assert lines_of("", 10) == []
