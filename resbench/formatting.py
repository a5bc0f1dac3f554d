"""How a number reads in a table or a line of text, the terminal's and report.md's alike."""

from __future__ import annotations

import math
from numbers import Integral

MISSING = "—"


def number(value: object, digits: int = 3, infinity: str = "inf") -> str:
    """`digits` significant digits; whole numbers whole; MISSING for None and NaN; ±infinity as `infinity`."""
    if value is None:
        return MISSING
    try:
        real = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(real):
        return MISSING
    if math.isinf(real):
        return infinity if real > 0 else "-" + infinity
    if isinstance(value, Integral):
        return str(int(value))
    return f"{real:.{digits}g}"
