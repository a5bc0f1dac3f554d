"""stdout and stderr that never fail a command: the terminal's encoding (LC_ALL=C on a cluster node or in a
minimal container is ASCII), a pipe closed under it (`resbench train | head -1`) or a full disk
(`> /dev/full`) cost output, never the run being written. `resbench.cli.main` puts them in place first.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import sys
from typing import TextIO

# What a character the terminal's encoding lacks (LC_ALL=C: ASCII) is written as; anything else is "?".
ASCII_LOOKALIKES = {
    "█": "#", "▉": "#", "▊": "#", "▋": "#", "▌": "#", "▍": "", "▎": "", "▏": "", "━": "-", "─": "-",
    "·": "-", "—": "-", "–": "-", "−": "-", "…": "...", "×": "x", "±": "+/-", "≥": ">=", "≤": "<=", "→": "->",
    "←": "<-", "‖": "|", "²": "^2", "√": "sqrt", "∇": "grad ", "∞": "inf", "Δ": "d", "≈": "~", "°": " deg",
    "₀": "0", "₁": "1", "₂": "2", "⌊": "", "⌋": "", "ᵀ": "^T", "\u0304": "", "θ": "theta", "ℓ": "l", "≠": "!=",
}
ENCODE_ERRORS = "resbench-lookalike"


def _lookalikes(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start:err.end]
    return "".join(ASCII_LOOKALIKES.get(char, "?") for char in text), err.end


codecs.register_error(ENCODE_ERRORS, _lookalikes)


class SafeStream(io.TextIOBase):
    """stdout or stderr for a command whose output must never fail it: what the stream's encoding lacks
    is written as an ASCII look-alike (or "?"), and once the stream is gone (`| head` closed the pipe;
    `> /dev/full` has no room) the rest is dropped, after one line on stderr unless the pipe was just
    closed, so a run that is being written goes on and ends as it would have."""

    def __init__(self, stream: TextIO, name: str):
        self.stream = stream
        self.name = name  # "stdout" or "stderr"
        self.broken = False

    @property
    def encoding(self) -> str:  # rich draws ASCII boxes and bars when this is not a UTF encoding
        return getattr(self.stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                try:
                    self.stream.write(text)
                except UnicodeEncodeError:
                    self.stream.write(text.encode(self.encoding, ENCODE_ERRORS).decode(self.encoding))
            except (OSError, ValueError) as err:  # ValueError: the stream was closed
                self._gone(err)
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError) as err:
                self._gone(err)

    def _gone(self, err: Exception) -> None:
        """Drop the rest, and point the file descriptor at /dev/null: what the stream still buffers, and
        whatever else writes there (a worker process, the interpreter at exit), then goes nowhere."""
        self.broken = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.stream.fileno())
            os.close(null)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        if self.name == "stdout" and getattr(err, "errno", None) != errno.EPIPE:
            reason = getattr(err, "strerror", None) or str(err)
            sys.stderr.write(f"resbench: cannot write to stdout ({reason}): the rest of the output is dropped\n")

    def isatty(self) -> bool:
        try:
            return not self.broken and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True


def safe_streams() -> None:
    """Make sys.stdout and sys.stderr SafeStreams: from here on, no print of this process can fail it
    over the terminal's encoding or a closed or full output."""
    if not isinstance(sys.stdout, SafeStream) and sys.stdout is not None:
        sys.stdout = SafeStream(sys.stdout, "stdout")
    if not isinstance(sys.stderr, SafeStream) and sys.stderr is not None:
        sys.stderr = SafeStream(sys.stderr, "stderr")
