"""Every `resbench` command line README.md shows works as typed: `train` lines through `resbench config` (the
same compose, validation and task build, nothing trained), `sweep` lines through `--dry-run` (every run
planned and validated), `report` and `--resume` lines on a small sweep made for them."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from report_fixtures import write_sweep

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDER = re.compile(r"\[|…|^[A-Z][A-Z_]*$|=[A-Z][A-Z_]*$")  # [OVERRIDES…], DIR, A B, +experiment=NAME
SWEEP_NAME = "2026-01-01_00-00-00"
TINY_RUN = ["depth=2", "width=16", "heads=2", "train.steps=3", "task.seq_len=8", "train.batch_size=4", "threads=1"]


def readme_commands() -> list[list[str]]:
    """Each `resbench …` command of README's shell blocks (`$ resbench` lines, `&&` chains and `\\`
    continuations included) and of its inline code, as the shell would split it; placeholders left out."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for shell, block in re.findall(r"```(bash)?\n(.*?)```", text, flags=re.DOTALL):
        block_lines = block.replace("\\\n", " ").splitlines()
        # a shell block is commands; in a sample of output, only the `$ ` lines are
        lines += block_lines if shell else [line[2:] for line in block_lines if line.startswith("$ ")]
    lines += re.findall(r"`(resbench [^`]+)`", text)
    commands = []
    for line in lines:
        for part in line.split("&&"):
            if part.split()[:1] != ["resbench"]:
                continue
            words = shlex.split(os.path.expandvars(part), comments=True)  # the shell expands $HOME
            placeholder = any(PLACEHOLDER.search(word) for word in words[1:])
            if words[:1] == ["resbench"] and not placeholder and words not in commands:
                commands.append(words)
    return commands


COMMANDS = readme_commands()


def test_readme_shows_commands_of_every_kind() -> None:
    kinds = {words[1] for words in COMMANDS if len(words) > 1}
    assert {"train", "sweep", "report", "config"} <= kinds, kinds
    assert any("--resume" in words for words in COMMANDS)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A small finished sweep at results/sweeps/<time>/ (the latest sweep of `report` and `--resume`)."""
    sweep_dir = tmp_path / "results" / "sweeps" / SWEEP_NAME
    write_sweep(sweep_dir, [{"depth": 2}, {"depth": 3}])
    stored = ["width=16", "heads=2", "train.steps=3", "task.seq_len=8", "seed=5,6"]  # runs still to run
    (sweep_dir / "sweep.json").write_text(json.dumps({"swept_keys": ["seed"], "overrides": stored}))
    return sweep_dir


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(words[1:]) or "bare" for words in COMMANDS])
def test_a_readme_command_works_as_typed(cli, results: Path, words: list[str]) -> None:
    command, args = (words[1], words[2:]) if len(words) > 1 else ("--help", [])
    if command == "train" and "--resume" in args:  # the run it continues: a tiny one, then interrupted
        run_dir = Path(args[args.index("--resume") + 1])
        assert cli("train", "--quiet", *TINY_RUN, f"hydra.run.dir={run_dir}").exit_code == 0
        summary = json.loads((run_dir / "summary.json").read_text())
        (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
        args = [*args, "--quiet"]
    elif command == "train":
        command, args = "config", [arg for arg in args if not arg.startswith("-")]
    elif command == "sweep":
        args = [*args, "--dry-run"]
    result = cli(command, *args)
    assert result.exit_code == 0, (words, result.output, result.exception)


def test_the_readme_path_example_works_as_typed(cli, tmp_path: Path, monkeypatch) -> None:
    """README's `task.path=$HOME/book.txt`, with the shell's expansion of $HOME."""
    example = re.search(r"`(task\.path=\$HOME/[^`]+)`", README.read_text(encoding="utf-8")).group(1)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "book.txt").write_text("It was the best of times, it was the worst of times.\n" * 40)
    result = cli("config", os.path.expandvars(example))
    assert result.exit_code == 0, result.output
    assert f"path: {tmp_path}/book.txt" in result.stdout
