"""Shared fixtures: a tiny config, the CLI run in-process in a temporary directory, a tiny text file.

    def test_something(train_cli):
        run = train_cli("norm=post")          # resbench train TINY… norm=post hydra.run.dir=<tmp>/run
        assert run.exit_code == 0
        metrics = pd.read_csv(run.dir / "metrics.csv")
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

# Seconds, not minutes: every test run stays small. threads=1 keeps runs deterministic and
# fast on a busy machine (several torch threads fighting over two cores crawl).
TINY = [
    "depth=2",
    "width=16",
    "heads=2",
    "train.steps=3",
    "task.seq_len=8",
    "train.batch_size=4",
    "train.eval_every=2",
    "threads=1",
]

TINY_TEXT = (
    "It was the best of times, it was the worst of times; naïve café, Ærø, 日本語, ∑ x² — "
    "the quick brown fox jumps over the lazy dog.\n"
) * 20


@pytest.fixture
def tiny() -> list[str]:
    """Overrides for a run that takes well under a second (a fresh list: add to it freely)."""
    return list(TINY)


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """A small UTF-8 text file with non-ASCII characters, long enough for task.seq_len=8."""
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@dataclass
class CliRun:
    """A finished in-process CLI call: its click Result and the run dir it was given."""

    result: Result
    dir: Path

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`cli("train", "depth=2", …)` runs `resbench …` in-process with tmp_path as the working directory.

    stdout and stderr are captured apart (`result.stdout`, `result.stderr`). Signal handlers the
    command installs (SIGTERM → interrupt) are put back afterwards.
    """
    from resbench.cli import app

    monkeypatch.chdir(tmp_path)
    try:
        runner = CliRunner(mix_stderr=False)  # Click < 8.2 mixes stderr into stdout unless told
    except TypeError:
        runner = CliRunner()  # Click >= 8.2 and Typer's own runner keep them apart always

    def invoke(*args: str) -> Result:
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return runner.invoke(app, list(args))
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    return invoke


@pytest.fixture
def train_cli(cli: Callable[..., Result], tmp_path: Path) -> Callable[..., CliRun]:
    """`train_cli(*overrides, name="run")`: `resbench train --quiet TINY… overrides… hydra.run.dir=<tmp>/name`."""

    def train(*overrides: str, name: str = "run") -> CliRun:
        run_dir = tmp_path / name
        result = cli("train", "--quiet", *TINY, *overrides, f"hydra.run.dir={run_dir}")
        return CliRun(result, run_dir)

    return train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one torch thread is fastest, and several crawl on a busy two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
