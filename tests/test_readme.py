"""Every `resbench` command line README.md and the docs/ pages show works as typed: `train` lines through
`resbench config` (the same compose, validation and task build, nothing trained), `sweep` lines through
`--dry-run` (every run planned and validated), `report` and `--resume` lines on a small sweep made for them.
Every relative link of those pages points to a file that exists, and an `#anchor` to one of its headings."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from report_fixtures import write_run, write_sweep

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# [OVERRIDES…], DIR, A B, +experiment=NAME, norm=<TAB>
PLACEHOLDER = re.compile(r"\[|…|^[A-Z][A-Z_]*$|=[A-Z][A-Z_]*$|<(?!timestamp>)[^>]*>")
SWEEP_NAME = "2026-01-01_00-00-00"
TIMESTAMP = "<timestamp>"  # in a path: the fixture's sweep, `results/sweeps/<timestamp>`
TINY_RUN = ["depth=2", "width=16", "heads=2", "train.steps=3", "task.seq_len=8", "train.batch_size=4", "threads=1"]
SETUP = ['pip install torch==2.13.0 -e . && resbench sweep depth=6,12,24 && resbench report',
         'pip install torch==2.13.0 -e ".[test]" && python -m pytest -q']


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order; an unfenced tail is not a block."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body)))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def page_commands(text: str) -> list[str]:
    """Each `resbench …` line of a page: its shell blocks (`$ resbench` lines of an output sample, `&&`
    chains and `\\` continuations included) and its inline code."""
    lines = []
    for language, block in code_blocks(text):
        block_lines = block.replace("\\\n", " ").splitlines()
        if language in ("bash", "sh", "shell"):
            lines += block_lines
        elif language == "":  # a sample of output: only the `$ ` lines are commands
            lines += [line[2:] for line in block_lines if line.startswith("$ ")]
    return lines + re.findall(r"`(resbench [^`]+)`", prose(text))


def doc_commands() -> list[list[str]]:
    """The commands of README and every docs/ page, as the shell would split them; placeholders left out."""
    commands = []
    for page in PAGES:
        for line in page_commands(page.read_text(encoding="utf-8")):
            for part in line.split("&&"):
                if part.split()[:1] != ["resbench"]:
                    continue
                words = shlex.split(os.path.expandvars(part), comments=True)  # the shell expands $HOME
                placeholder = any(PLACEHOLDER.search(word) for word in words[1:])
                if words[:1] == ["resbench"] and not placeholder and words not in commands:
                    commands.append(words)
    return commands


COMMANDS = doc_commands()


def test_readme_opens_with_the_two_setup_commands() -> None:
    """The first code block of README is the install-and-run line and the install-and-test line, as typed."""
    (language, first), *_ = code_blocks(README.read_text(encoding="utf-8"))
    assert (language, first.splitlines()) == ("bash", SETUP)


def test_the_docs_show_commands_of_every_kind() -> None:
    kinds = {words[1] for words in COMMANDS if len(words) > 1}
    assert {"train", "sweep", "report", "config"} <= kinds, kinds
    assert any("--resume" in words for words in COMMANDS)
    assert any(TIMESTAMP in word for words in COMMANDS for word in words)  # the <timestamp> rule is used


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A small finished sweep at results/sweeps/<time>/ (the latest sweep of `report` and `--resume`)."""
    sweep_dir = tmp_path / "results" / "sweeps" / SWEEP_NAME
    write_sweep(sweep_dir, [{"depth": 2}, {"depth": 3}])
    stored = ["width=16", "heads=2", "train.steps=3", "task.seq_len=8", "seed=5,6"]  # runs still to run
    (sweep_dir / "sweep.json").write_text(json.dumps({"swept_keys": ["seed"], "overrides": stored}))
    return sweep_dir


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(words[1:]) or "bare" for words in COMMANDS])
def test_a_documented_command_works_as_typed(cli, results: Path, words: list[str]) -> None:
    words = [word.replace(TIMESTAMP, SWEEP_NAME) for word in words]
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
    elif command == "report":  # a run dir the page made otherwise (e.g. with resbench.watch): a small run there
        for arg in args:
            if not arg.startswith("-") and not (results.parents[2] / arg).exists():
                write_run(results.parents[2] / arg, {"depth": 2})
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


# ---- links ---------------------------------------------------------------------------------------------

def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens, a
    repeated anchor numbered (-1, -2, …)."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", prose(text), flags=re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        numbered, n = anchor, 0
        while numbered in anchors:
            n += 1
            numbered = f"{anchor}-{n}"
        anchors.add(numbered)
    return anchors


def relative_links(text: str) -> list[str]:
    """Targets of the page's Markdown links and images that are not URLs, outside code."""
    text = re.sub(r"`[^`\n]*`", "", prose(text))
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]


LINKS = [(page, target) for page in PAGES for target in relative_links(page.read_text(encoding="utf-8"))]


def test_the_docs_have_links() -> None:
    """README links to every docs/ page (the link check below then has something to check)."""
    linked = {(README.parent / target.split("#")[0]).resolve() for page, target in LINKS if page == README}
    assert set(PAGES[1:]) <= linked, sorted(str(p) for p in set(PAGES[1:]) - linked)


@pytest.mark.parametrize("page, target", LINKS, ids=[f"{p.name}:{t}" for p, t in LINKS])
def test_a_relative_link_points_to_a_file_and_heading(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.name}: {target}: no file {file}"
    if anchor:
        assert anchor in heading_anchors(file.read_text(encoding="utf-8")), f"{page.name}: {target}: no heading"
