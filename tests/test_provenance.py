"""provenance.json: which code made a run (the git commit and dirty flag of the working directory's
repository), on what (versions, device, host), when and from which command line; read back by
resbench.load and named in the report."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from test_watch import GPT, batches, loss_of

import resbench
from resbench import records
from resbench.schema import PROVENANCE_FIELDS, PROVENANCE_JSON


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def watched_run(run_dir) -> dict:
    model = GPT()
    with resbench.watch(model, blocks="transformer.h", run_dir=run_dir, log_every=1) as w:
        w.step(loss_of(model, *batches(1)[0]), torch.optim.SGD(model.parameters(), lr=0.1))
    return json.loads((run_dir / PROVENANCE_JSON).read_text())


def test_provenance_names_the_commit_of_the_working_directory_and_flags_uncommitted_changes(tmp_path, monkeypatch):
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1")
    monkeypatch.chdir(repo)
    clean = watched_run(tmp_path / "clean")
    assert list(clean) == list(PROVENANCE_FIELDS)
    assert clean["git_commit"] == git(repo, "rev-parse", "HEAD") and clean["git_dirty"] is False
    assert clean["cwd"] == str(repo) and clean["command"] == sys.argv
    assert clean["torch_version"] == torch.__version__ and clean["resbench_version"] == resbench.__version__
    assert clean["python_version"] == ".".join(map(str, sys.version_info[:3])) and clean["host"] and clean["device_name"]
    assert clean["cuda_version"] == torch.version.cuda and clean["started_at"][:4].isdigit()

    (repo / "train.py").write_text("print('v2')\n")  # an uncommitted change to a tracked file
    assert watched_run(tmp_path / "dirty")["git_dirty"] is True

    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it either
    found = watched_run(tmp_path / "norepo")
    assert found["git_commit"] is None and found["git_dirty"] is None


def test_a_git_that_hangs_or_is_missing_leaves_the_commit_unknown(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nsleep 5\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert records.git_state(tmp_path, timeout_s=0.2) == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert records.git_state(tmp_path) == (None, None)


def test_a_trainer_run_has_it_and_load_and_report_show_mixed_commits(tmp_path, cli, tiny):
    sweep = tmp_path / "runs"
    for name in ("a", "b"):
        result = cli("train", "--quiet", *tiny, f"hydra.run.dir={sweep / name}")
        assert result.exit_code == 0, result.output
    facts = json.loads((sweep / "a" / PROVENANCE_JSON).read_text())
    assert facts["command"] == sys.argv and facts["device_name"]  # in-process: this process's command line
    for name, commit, dirty, torch_version in (("a", "a" * 40, False, torch.__version__), ("b", "f" * 40, True, "2.4.0")):
        edited = {**json.loads((sweep / name / PROVENANCE_JSON).read_text()), "git_commit": commit, "git_dirty": dirty,
                  "torch_version": torch_version, "command": ["resbench", "train", "it's"]}
        (sweep / name / PROVENANCE_JSON).write_text(json.dumps(edited))
    runs = resbench.load(sweep).runs.set_index("name")
    assert runs.loc["b", "git_commit"] == "f" * 40 and runs.loc["b", "torch_version"] == "2.4.0"
    assert runs.loc["a", "command"] == "resbench train 'it'\"'\"'s'"  # one shell-quoted string

    result = cli("report", str(sweep))
    assert result.exit_code == 0, result.output
    report = (sweep / "report" / "report.md").read_text()
    warnings = report.split("## Warnings", 1)[1].split("##", 1)[0]
    assert "runs from 2 git commits: aaaaaaa (1 run), fffffff (1 run)" in warnings
    assert "1 run(s) made from a working tree with uncommitted changes (git_dirty): b" in warnings
    assert f"runs mix torch versions: {torch.__version__} (1 run), 2.4.0 (1 run)" in warnings
    assert f"Code: git: 2 commits · resbench {resbench.__version__} · Python " in report
    assert "torch: 2 versions." in report
