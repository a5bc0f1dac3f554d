"""Bad input: exit 2, one line on stderr, no traceback, nothing written."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD_TEXT = b"caf\xe9 is Latin-1, not UTF-8\n" * 20

# id → (overrides, a piece of the one error line). {tmp} is the test's temporary directory.
BAD_INPUTS = {
    "unknown key": (["bogus=1"], "unknown key 'bogus'"),
    "typo'd key": (["dpeth=3"], "did you mean 'depth'"),
    "typo'd nested key": (["train.stpes=3"], "did you mean 'steps'"),
    "wrong type": (["depth=abc"], "depth must be an integer"),
    "bad norm": (["norm=bogus"], "valid choices"),
    "bad norm_type": (["norm_type=bogus"], "valid choices"),
    "bad model": (["model=bogus"], "valid choices"),
    "bad task": (["task=bogus"], "valid choices"),
    "bad model.norm": (["model.norm=bogus"], "valid choices"),
    "depth 0": (["depth=0"], "depth must be an integer >= 1"),
    "model.depth 0": (["model.depth=0"], "depth must be an integer >= 1"),
    "lr 0": (["train.lr=0"], "train.lr"),
    "lr negative": (["train.lr=-1e-3"], "train.lr"),
    "lr nan": (["train.lr=nan"], "train.lr"),
    "steps negative": (["train.steps=-1"], "train.steps"),
    "init_draws 0": (["init_draws=0"], "init_draws must be an integer >= 1, got 0"),
    "init_draws fractional": (["init_draws=2.5"], "init_draws must be an integer"),
    "group replaced": (["train=3"], "train"),
    "heads do not divide width": (["width=15"], "divisible"),
    "task.path missing": (["task.path={tmp}/missing.txt"], "no such file"),
    "task.path not UTF-8": (["task.path={tmp}/latin1.txt"], "not UTF-8"),
    "task.path a directory": (["task.path={tmp}"], "directory"),
    "task.path too short": (["task.path={tmp}/short.txt"], "task.seq_len"),
    "unparsable override": (["depth=[1,2"], "cannot parse override"),
    "no equals sign": (["depth"], "depth"),
    "output dir under a file": (["hydra.run.dir={tmp}/a_file/run"], "not writable"),
    "output dir in /proc": (["hydra.run.dir=/proc/resbench-test/run"], "not writable"),
    "output dir not empty": (["hydra.run.dir={tmp}/full"], "not empty"),
    # the checks read the value Hydra parses, not the override's text: quotes are the grammar's
    "output dir not empty, quoted": (["hydra.run.dir='{tmp}/full'"], "not empty"),
    "output dir not empty, double-quoted": (['hydra.run.dir="{tmp}/full"'], "not empty"),
    "output dir empty string": (["hydra.run.dir=''"], "hydra.run.dir must be a directory path"),
    "output dir blank": (["hydra.run.dir=' '"], "hydra.run.dir must be a directory path"),
    # every key goes through the validator, task keys and keys added with + included
    "task.vocab 0": (["task=reverse", "task.vocab=0"], "task.vocab must be an integer >= 1, got 0"),
    "task.vocab negative": (["task=reverse", "task.vocab=-3"], "task.vocab must be an integer"),
    "task.vocab text": (["task=reverse", "task.vocab=abc"], "task.vocab must be an integer"),
    "task.vocab float": (["task=reverse", "task.vocab=2.5"], "task.vocab must be an integer"),
    "unknown key added with +": (["+nonexistent=1"], "unknown key 'nonexistent'"),
    "unknown nested key added with +": (["+train.stepz=1"], "did you mean 'steps'"),
    "seed past 64 bits": (["seed=36893488147419103232"], "seed must be an integer <= 18446744073709551615"),
    "model too large for memory": (["width=10000000", "heads=1"], "GiB"),
    "depth too large for memory": (["depth=1000000000"], "GiB"),
    "task.path empty": (["task.path=''"], "task.path must be a file path"),
    "seq_len too long for the built-in corpus": (["task.seq_len=10000000"], "the built-in corpus"),
    "a sweep given to train": (["seed=range(2)"], "`resbench sweep`"),
    "a bare ~ in a path": (["task.path=~/book.txt"], "$HOME"),
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "latin1.txt").write_bytes(BAD_TEXT)
    (tmp_path / "short.txt").write_text("too short\n", encoding="utf-8")
    (tmp_path / "a_file").write_text("a regular file\n", encoding="utf-8")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("another run's file\n", encoding="utf-8")
    return tmp_path


def listing(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


def assert_one_clean_line(stderr: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:"), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("overrides, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exits_2_with_one_line(cli, tiny, workdir: Path, overrides: list[str], expected: str) -> None:
    overrides = [o.format(tmp=workdir) for o in overrides]
    # The run dir goes first: an override of hydra.run.dir in the case wins (the last value counts).
    args = ["train", f"hydra.run.dir={workdir}/run", *tiny, *overrides]
    before = listing(workdir)
    result = cli(*args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped exception
    assert_one_clean_line(result.stderr, expected)
    assert result.stdout == ""
    assert listing(workdir) == before, "bad input wrote something"
    assert not Path("/proc/resbench-test").exists()


@pytest.mark.parametrize("args", [["config", "bogus=1"], ["config", "norm=bogus"], ["config", "+bogus=1"]],
                         ids=["key", "choice", "added key"])
def test_config_command_refuses_bad_input(cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert_one_clean_line(result.stderr, "bogus")


@pytest.mark.parametrize("command", [["config"], ["sweep", "--dry-run"]])
def test_task_keys_are_validated_in_config_and_in_sweep_lists(cli, tiny, command: list[str]) -> None:
    result = cli(*command, *tiny, "task=reverse", "task.vocab=4,0" if "sweep" in command else "task.vocab=0")
    assert result.exit_code == 2, result.output
    assert_one_clean_line(result.stderr, "task.vocab must be an integer >= 1, got 0")


def test_a_quoted_run_dir_never_overwrites_a_finished_run(train_cli, cli, tiny, tmp_path: Path) -> None:
    """The run dir is the value Hydra resolves: quoting it as the grammar allows must not slip past the
    not-empty check and write over a finished run."""
    first = train_cli()
    assert first.exit_code == 0, first.stderr
    before = {path: path.read_bytes() for path in first.dir.rglob("*") if path.is_file()}
    for quoted in (f"'{first.dir}'", f'"{first.dir}"', f"'{first.dir}/'"):
        result = cli("train", "--quiet", *tiny, "seed=1", f"hydra.run.dir={quoted}")
        assert result.exit_code == 2, (quoted, result.output)
        assert_one_clean_line(result.stderr, "not empty")
    assert {path: path.read_bytes() for path in first.dir.rglob("*") if path.is_file()} == before


def test_empty_run_dir_never_writes_into_the_working_directory(cli, tiny, tmp_path: Path) -> None:
    result = cli("train", "--quiet", *tiny, "hydra.run.dir=''")
    assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_launcher_without_any_hydra_plugin_installed_is_one_line(cli, tiny, monkeypatch) -> None:
    """With no plugin at all there is no hydra_plugins namespace, and looking one up raises."""
    from resbench import registries

    monkeypatch.setitem(registries.LAUNCHER_PLUGINS, "joblib",
                        ("resbench_absent_namespace.hydra_joblib_launcher", "resbench[joblib]"))
    result = cli("sweep", "--dry-run", *tiny, "seed=0,1", "hydra/launcher=joblib")
    assert result.exit_code == 2, result.output
    assert_one_clean_line(result.stderr, "pip install 'resbench[joblib]'")


def test_bad_input_in_a_real_terminal(tmp_path: Path) -> None:
    """What a user sees: from a real process, no traceback on the terminal, exit 2, nothing written."""
    done = subprocess.run(
        [sys.executable, "-m", "resbench.cli", "train", "depth=0", "train=3", f"hydra.run.dir={tmp_path}/run"],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert_one_clean_line(done.stderr, "must be")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_cuda_asked_for_without_a_gpu(cli, tiny, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = cli("train", *tiny, "device=cuda", f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 2, result.output
    assert_one_clean_line(result.stderr, "device=cuda")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- a full disk
class TinyDisk:
    """`open` for resbench.records with `free` bytes left on the disk of the files matching `suffixes`:
    a write past it writes what fits and raises OSError(ENOSPC), as a full disk does."""

    def __init__(self, free: int, suffixes: tuple[str, ...] = ("",)):
        self.free = free
        self.suffixes = suffixes

    def open(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 - handed to the caller
        if "r" in mode or not str(path).endswith(self.suffixes):
            return handle
        return LimitedFile(handle, self)


class LimitedFile:
    def __init__(self, handle, disk: TinyDisk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        fits = min(len(data), self._disk.free)
        self._handle.write(data[:fits])
        self._disk.free -= fits
        if fits < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return fits

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def test_a_csv_row_that_does_not_fit_is_cut_back_to_whole_rows(tmp_path: Path, monkeypatch) -> None:
    from resbench import records

    monkeypatch.setattr(records, "open", TinyDisk(free=60).open, raising=False)
    path = tmp_path / "metrics.csv"
    writer = records.CsvWriter(path, ["step", "loss"])
    writer.write_rows([{"step": 0, "loss": 1.5}, {"step": 1, "loss": 1.25}])
    writer.flush()
    writer.write_rows([{"step": step, "loss": 0.123456789} for step in range(2, 10)])
    with pytest.raises(records.NoSpaceError) as caught:
        writer.flush()
    assert str(caught.value) == f"no space left on device: {path}"
    writer.close()
    assert path.read_bytes() == b"step,loss\r\n0,1.5\r\n1,1.25\r\n", "rows already written stay whole"


def test_a_summary_that_does_not_fit_keeps_the_old_one_and_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    from resbench import records

    path = tmp_path / "summary.json"
    records.write_json(path, {"status": "running"})
    monkeypatch.setattr(records, "open", TinyDisk(free=5).open, raising=False)
    with pytest.raises(records.NoSpaceError, match=f"no space left on device: {path}"):
        records.write_json(path, {"status": "completed", "final_loss": 1.0})
    assert records.read_json(path) == {"status": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_train_on_a_full_disk_is_one_line_and_the_run_failed(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    """The CSVs fill the disk mid-run (their cut rows give back the space a summary needs): one line,
    exit 1, summary.json failed with that error, every row already written whole."""
    from resbench import records

    monkeypatch.setattr(records, "open", TinyDisk(free=30_000, suffixes=(".csv",)).open, raising=False)
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", *tiny, "train.steps=400", "log_every=1", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 1, (result.output, result.exception)
    assert_one_clean_line(result.stderr, "no space left on device: ")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "no space left on device" in summary["error"]
    for name in ("metrics.csv", "grad_norms.csv", "layers.csv"):
        text = (run_dir / name).read_text()
        assert text.endswith("\n"), name
        widths = {len(line.split(",")) for line in text.splitlines()}
        assert len(widths) == 1, (name, widths)
    assert not list(run_dir.glob(".*.tmp"))


def test_train_on_a_disk_that_stays_full_is_one_line(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    from resbench import records

    disk = TinyDisk(free=30_000)
    monkeypatch.setattr(records, "open", disk.open, raising=False)
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", *tiny, "train.steps=400", "log_every=1", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 1, (result.output, result.exception)
    assert_one_clean_line(result.stderr, "no space left on device: ")
    assert json.loads((run_dir / "summary.json").read_text())["status"] in ("running", "failed")
    assert not list(run_dir.glob(".*.tmp"))


# ----------------------------------------------------------------------------- the report's helper
PLANTED_PANDAS = """
from pathlib import Path
Path(__file__).with_name("planted-imported").touch()
raise ImportError("a planted pandas.py was imported")
"""


def test_the_report_helper_never_imports_from_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """The helper process unpickles DataFrames (so imports pandas): a pandas.py where the user runs
    `resbench report` must not be what it imports."""
    import pandas as pd

    from resbench.report import render

    (tmp_path / "pandas.py").write_text(PLANTED_PANDAS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    curve = pd.DataFrame({"panel": "", "line": ["a", "a"], "side": "", "x": [0, 1], "y": [1.0, 2.0]})
    jobs = [render.PlotJob("line_figure", curve, tmp_path / f"plot{i}.png",
                           {"title": "t", "x_label": "x", "y_label": "y"}) for i in range(2)]
    helper = render.Helper()
    try:
        render.draw_all(jobs, helper)
        assert helper.process.returncode == 0, "the helper failed (and this process drew its share)"
    finally:
        helper.close()
    assert not (tmp_path / "planted-imported").exists()
    assert all(job.path.stat().st_size > 0 for job in jobs)


# ----------------------------------------------------------------------------- report on damaged runs
def _append_rows(path: Path, *rows: str) -> None:
    path.write_text(path.read_text() + "".join(row + "\n" for row in rows))


DAMAGE = {
    "config.yaml not UTF-8": (lambda run: (run / "config.yaml").write_bytes(b"depth: 2\nname: caf\xe9\n"),
                              "config.yaml unparsable"),
    "impossible layer ids": (lambda run: _append_rows(run / "layers.csv", "10,99999,1,1,1,1,1", "10,-5,1,1,1,1,1"),
                             "layers.csv: 2 rows with an impossible layer skipped"),
    "absurd steps": (lambda run: _append_rows(run / "metrics.csv", "99999999999999999999999,1.0,,0.1,1.0,1.0",
                                              "-7,1.0,,0.1,1.0,1.0"),
                     "metrics.csv: 2 rows with an impossible step skipped"),
    "absurd step in layers.csv": (lambda run: _append_rows(run / "layers.csv", "1e300,0,1,1,1,1,1"),
                                  "layers.csv: 1 rows with an impossible step skipped"),
}


@pytest.mark.parametrize(("damage", "warning"), DAMAGE.values(), ids=DAMAGE.keys())
def test_report_on_a_damaged_run_warns_naming_it_and_uses_the_rest(cli, tmp_path: Path, damage, warning) -> None:
    from report_fixtures import write_run

    sweep_dir = tmp_path / "sweep"
    write_run(sweep_dir / "depth=2", {"depth": 2})
    write_run(sweep_dir / "depth=4", {"depth": 4})
    damage(sweep_dir / "depth=2")
    result = cli("report", str(sweep_dir))
    assert result.exit_code == 0, (result.output, result.exception)
    report = (sweep_dir / "report" / "report.md").read_text()
    assert "depth=2" in report and warning in report, report
    assert (sweep_dir / "report" / "grad_norm_heatmap.png").stat().st_size > 0


@pytest.mark.parametrize("out", ["{tmp}/a_file", "{tmp}/a_file/report", "/proc/resbench-test/report"],
                         ids=["a file", "under a file", "unwritable"])
def test_report_out_that_cannot_be_written_is_one_line(cli, tmp_path: Path, out: str) -> None:
    from report_fixtures import write_run

    write_run(tmp_path / "sweep" / "depth=2", {"depth": 2})
    (tmp_path / "a_file").write_text("a regular file\n")
    before = listing(tmp_path)
    result = cli("report", str(tmp_path / "sweep"), "--out", out.format(tmp=tmp_path))
    assert result.exit_code == 2, (result.output, result.exception)
    assert_one_clean_line(result.stderr, "report")
    assert listing(tmp_path) == before


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 200 KB tmpfs at tmp_path/disk, where the platform lets this process mount one."""
    import shutil
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the injected-ENOSPC tests cover the writers")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def assert_whole_rows(directory: Path) -> None:
    for path in directory.rglob("*.csv"):
        text = path.read_text()
        assert text.endswith("\n"), path
        assert len({len(line.split(",")) for line in text.splitlines()}) == 1, path


@pytest.mark.slow
def test_a_real_full_disk(cli, tiny, small_disk: Path) -> None:
    """train and sweep on a 200 KB tmpfs: one line, exit 1, no traceback, no temporary file, every row
    whole; --resume once there is room runs the rest."""
    import subprocess

    run_dir = small_disk / "run"
    result = cli("train", "--quiet", *tiny, "train.steps=400", "log_every=1", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 1, (result.output, result.exception)
    assert_one_clean_line(result.stderr, "no space left on device: ")
    assert json.loads((run_dir / "summary.json").read_text())["status"] in ("failed", "running")
    assert_whole_rows(run_dir)
    assert not list(small_disk.rglob(".*.tmp"))
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)

    sweep_dir = small_disk / "sweep"
    args = [*tiny, "train.steps=400", "log_every=1", "seed=0,1"]
    result = cli("sweep", "--quiet", *args, f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 1, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert not list(small_disk.rglob(".*.tmp")) and not list(small_disk.rglob(".*.tmp.*"))
    assert_whole_rows(sweep_dir)

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 0, (result.output, result.exception)
    statuses = {run.name: json.loads((run / "summary.json").read_text())["status"] for run in sweep_dir.iterdir()
                if (run / "summary.json").is_file()}
    assert statuses == {"seed=0": "completed", "seed=1": "completed"}


def test_a_csv_row_is_written_by_column_name(tmp_path: Path) -> None:
    from resbench import records

    writer = records.CsvWriter(tmp_path / "metrics.csv", ["step", "loss", "lr"])
    writer.write_rows([{"lr": 0.5, "step": 0}])  # any order; a column not given is empty
    with pytest.raises(ValueError, match="no column"):
        writer.write_rows([{"step": 1, "los": 2.0}])
    writer.close()
    assert (tmp_path / "metrics.csv").read_text() == "step,loss,lr\n0,,0.5\n"
