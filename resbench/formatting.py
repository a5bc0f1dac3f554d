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


def wrap_spans(text: str, width: int, indent: int = 0) -> list[tuple[int, int, int]]:
    """Where to cut one line of `text` into lines of at most `width` characters: (start, end, indent) per
    line, lines after the first indented by `indent` spaces unless they start with a word too long for an
    indented line. Cuts fall between words; a word longer than a line (a path) starts a line of its own
    and is cut only beside a `/`, so that a directory name is never split (a name longer than a line is
    cut where the line ends)."""
    spans: list[tuple[int, int, int]] = []
    start = 0
    while start < len(text):
        word = text.find(" ", start)
        word = (len(text) if word < 0 else word) - start
        pad = indent if spans and word <= width - indent else 0
        room = max(1, width - pad)
        if len(text) - start <= room:
            spans.append((start, len(text), pad))
            break
        space = text.rfind(" ", start, start + room + 1)
        slash = text.rfind("/", start, start + room + 1)  # cut after it, or before it when it would start the next line
        end = space if space > start else min(slash + 1, start + room) if slash > start else start + room
        spans.append((start, start + len(text[start:end].rstrip(" ")), pad))
        start = end
        while start < len(text) and text[start] == " ":
            start += 1
    return spans
