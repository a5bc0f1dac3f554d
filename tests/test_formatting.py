"""One number formatter for the terminal, report tables and findings."""

import math

import numpy as np

from resbench.formatting import number


def test_numbers_read_alike_everywhere() -> None:
    assert [number(v) for v in (None, math.nan, np.float64(np.nan), 12345, np.int64(7), 0.123456)] == [
        "—", "—", "—", "12345", "7", "0.123"]
    assert number(math.inf) == "inf" and number(-math.inf, infinity="∞") == "-∞"
    assert number(1.23456789, 4) == "1.235" and number("n/a") == "n/a"
