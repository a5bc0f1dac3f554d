"""`resbench sweep` end to end: expansion, run dirs, runs.csv, resume, faults (a run that raises, one that
diverges, SIGINT) and bad input; the joblib and submitit_local launchers. SLURM: test_slurm.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from resbench import records, sweeps, trainer
from resbench.sweep_watch import PARALLEL_RUNS_ENV, thread_budget, usable_cores
from resbench.sweeps import parallel_runs

# A run of well under a second. threads=1 keeps it fast on a busy machine; the tests of worker launchers
# pass threads=null to see the thread budget at work.
TINY = ["width=16", "heads=2", "train.steps=3", "task.seq_len=8", "train.batch_size=4", "train.eval_every=2",
        "threads=1"]
RUNS_CSV_COLUMNS = ["run", "status", "final_loss", "final_val_loss", "wall_s"]


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {run.relative_to(sweep_dir).as_posix(): json.loads((run / "summary.json").read_text())
            for run in records.find_runs(sweep_dir)}


def signature(path: Path) -> tuple[int, int, bytes]:
    """Changes if the file is rewritten or replaced."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def run_files(run_dir: Path) -> dict[str, tuple]:
    return {name: signature(run_dir / name)
            for name in ("summary.json", "metrics.csv", "grad_norms.csv", "layers.csv", "config.yaml")}


@pytest.fixture
def sweep(cli, tmp_path: Path):
    """`sweep(*overrides, name="sweep")`: `resbench sweep TINY… overrides… hydra.sweep.dir=<tmp>/name`."""

    def run(*overrides: str, name: str = "sweep"):
        sweep_dir = tmp_path / name
        return cli("sweep", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}"), sweep_dir

    return run


# ----------------------------------------------------------------------------- expansion
def test_lists_range_and_choice_expand_to_their_cartesian_product(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    plan = sweeps.plan_sweep([*TINY, "depth=2,3", "seed=range(2)", "norm=choice(pre,post)",
                                 f"hydra.sweep.dir={sweep_dir}"])
    assert plan.swept_keys == ["depth", "seed", "norm"]
    assert [run.swept for run in plan.runs] == [
        {"depth": d, "seed": s, "norm": n} for d in ("2", "3") for s in ("0", "1") for n in ("pre", "post")]
    # run dirs are named by the swept keys only (Hydra sorts them), never by the constant ones
    assert plan.runs[0].name == "depth=2,norm=pre,seed=0"
    assert len({run.config_hash for run in plan.runs}) == 8
    assert plan.sweep_dir == sweep_dir and not sweep_dir.exists(), "planning writes nothing"
    # no launcher named: side by side, one worker per core at threads=1 (in-process on a single core)
    workers = min(8, usable_cores())
    assert (plan.launcher, plan.parallel_runs) == ("joblib" if workers > 1 else "basic", workers)
    assert f"++hydra.job.env_set.{PARALLEL_RUNS_ENV}={workers}" in plan.hydra_overrides
    basic = sweeps.plan_sweep([*TINY, "depth=2,3", "hydra/launcher=basic", f"hydra.sweep.dir={sweep_dir}"])
    assert f"++hydra.job.env_set.{PARALLEL_RUNS_ENV}=1" in basic.hydra_overrides  # in-process: one at a time


def test_glob_picks_config_group_options(tmp_path: Path) -> None:
    plan = sweeps.plan_sweep(["model=glob(*,exclude=seq2seq)", "task=digits", "width=8", "heads=2", "train.steps=1",
                                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert [run.name for run in plan.runs] == ["model=mlp", "model=transformer"]


def test_dry_run_prints_the_runs_and_writes_nothing(cli, tmp_path: Path) -> None:
    result = cli("sweep", "--dry-run", *TINY, "depth=2,3", "seed=range(2)")
    assert result.exit_code == 0, result.stderr
    for name in ("depth=2,seed=0", "depth=2,seed=1", "depth=3,seed=0", "depth=3,seed=1"):
        assert name in result.stdout
    assert "4 run(s)" in result.stdout
    assert not (tmp_path / "results").exists()


def test_an_experiment_preset_sweeps_its_params_and_does_not_name_dirs(tmp_path: Path) -> None:
    """+experiment=NAME (conf/experiment/) may carry hydra.sweeper.params; a preset swept itself names dirs."""
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "tiny.yaml").write_text(
        "# @package _global_\ntrain:\n  steps: 2\nhydra:\n  sweeper:\n    params:\n      depth: 2,3\n")
    (experiments / "other.yaml").write_text("# @package _global_\nseed: 7\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    plan = sweeps.plan_sweep([*TINY, "+experiment=tiny", search, f"hydra.sweep.dir={tmp_path / 'a'}"])
    assert plan.swept_keys == ["depth"]
    assert [run.name for run in plan.runs] == ["depth=2", "depth=3"]
    plan = sweeps.plan_sweep([*TINY, "+experiment=tiny,other", search, f"hydra.sweep.dir={tmp_path / 'b'}"])
    assert [run.name for run in plan.runs] == ["+experiment=tiny", "+experiment=other"]


# ----------------------------------------------------------------------------- runs and records
def test_a_sweep_writes_a_run_dir_per_run_runs_csv_and_sweep_json(sweep) -> None:
    result, sweep_dir = sweep("depth=2,3")
    assert result.exit_code == 0, result.stderr
    done = summaries(sweep_dir)
    assert set(done) == {"depth=2", "depth=3"}
    assert all(s["status"] == "completed" for s in done.values())
    runs = pd.read_csv(sweep_dir / "runs.csv")
    assert list(runs.columns) == ["run", "status", "depth", "final_loss", "final_val_loss", "wall_s"]
    assert runs.run.tolist() == ["depth=2", "depth=3"] and runs.depth.tolist() == [2, 3]
    for row in runs.itertuples():
        assert row.final_loss == pytest.approx(done[row.run]["final_loss"])
        assert row.final_val_loss == pytest.approx(done[row.run]["final_val_loss"])
    assert json.loads((sweep_dir / "sweep.json").read_text()) == {
        "swept_keys": ["depth"], "overrides": [*TINY, "depth=2,3"], "n_runs": 2,
        "launcher": "joblib" if usable_cores() > 1 else "basic",  # the default: side by side when it can
        "runs": ["depth=2", "depth=3"]}
    assert (sweep_dir / "multirun.yaml").is_file() and (sweep_dir / "depth=2" / ".hydra").is_dir()
    assert not list(sweep_dir.glob(".*.tmp")), "runs.csv is replaced atomically"
    # one line per run as it ends, then the table
    assert "[1/2]" in result.stdout and "[2/2]" in result.stdout
    assert "grad ratio" in result.stdout and "2 completed" in result.stdout


def test_a_sweep_without_lists_runs_once_into_a_run_subdir(sweep) -> None:
    result, sweep_dir = sweep("depth=2")
    assert result.exit_code == 0, result.stderr
    assert list(summaries(sweep_dir)) == ["run"]
    assert pd.read_csv(sweep_dir / "runs.csv").columns.tolist() == RUNS_CSV_COLUMNS


# ----------------------------------------------------------------------------- resume
def test_resume_skips_completed_runs_and_reruns_removed_and_killed_ones(cli, tmp_path: Path) -> None:
    assert cli("sweep", *TINY, "depth=2", "seed=0,1,2,3").exit_code == 0  # default dir: results/sweeps/<time>
    (sweep_dir,) = (tmp_path / "results" / "sweeps").iterdir()
    kept = {name: run_files(sweep_dir / name) for name in ("seed=0", "seed=3")}
    shutil.rmtree(sweep_dir / "seed=1")
    killed = sweep_dir / "seed=2"  # what kill -9 mid-run leaves: summary.json says running, rows so far
    summary = json.loads((killed / "summary.json").read_text())
    records.write_json(killed / "summary.json", {**summary, "status": "running", "final_loss": None})
    (killed / "metrics.csv").write_text("".join((killed / "metrics.csv").read_text().splitlines(True)[:2]))
    records.write_runs_csv(sweep_dir)
    assert pd.read_csv(sweep_dir / "runs.csv").status.tolist() == ["completed", "running", "completed"]

    result = cli("sweep", "--resume")  # the latest sweep, with its own overrides
    assert result.exit_code == 0, result.stderr
    assert {name: run_files(sweep_dir / name) for name in kept} == kept, "completed runs were not rerun"
    assert summaries(sweep_dir)["seed=1"]["status"] == "completed"
    rerun = summaries(sweep_dir)["seed=2"]
    same = ("status", "steps_done", "final_loss", "final_val_loss", "config_hash")
    assert {k: rerun[k] for k in same} == {k: summary[k] for k in same}, "the killed run ran again, alike"
    assert "2 skipped" in result.stdout and "[2/2]" in result.stdout
    assert pd.read_csv(sweep_dir / "runs.csv").status.tolist() == ["completed"] * 4


def test_resume_with_a_longer_list_runs_only_the_new_runs(cli, sweep) -> None:
    result, sweep_dir = sweep("seed=0,1")
    assert result.exit_code == 0, result.stderr
    kept = run_files(sweep_dir / "seed=0")
    result = cli("sweep", "--resume", str(sweep_dir), "seed=0,1,2")
    assert result.exit_code == 0, result.stderr
    assert run_files(sweep_dir / "seed=0") == kept
    assert set(summaries(sweep_dir)) == {"seed=0", "seed=1", "seed=2"}
    assert "seed=0,1,2" in json.loads((sweep_dir / "sweep.json").read_text())["overrides"]
    # a result is never written over: another config for the same run dirs is refused
    result = cli("sweep", "--resume", str(sweep_dir), "train.steps=4")
    assert result.exit_code == 2 and "another config" in result.stderr
    assert run_files(sweep_dir / "seed=0") == kept


def hydra_files(run_dir: Path) -> dict[str, tuple]:
    return {path.name: signature(path) for path in sorted((run_dir / ".hydra").iterdir())}


def test_resume_that_adds_a_key_runs_only_configs_not_run_yet(cli, sweep) -> None:
    """The sweep did not sweep seed; resuming with seed=0,1 finds the seed-0 runs (same config hash) under
    their old names and runs only seed 1: no run twice, none listed twice, skipped runs untouched."""
    result, sweep_dir = sweep("depth=2,3")
    assert result.exit_code == 0, result.stderr
    kept = {name: (run_files(sweep_dir / name), hydra_files(sweep_dir / name)) for name in ("depth=2", "depth=3")}
    result = cli("sweep", "--resume", str(sweep_dir), "seed=0,1")
    assert result.exit_code == 0, result.stderr
    assert {name: (run_files(sweep_dir / name), hydra_files(sweep_dir / name)) for name in kept} == kept
    assert sorted(summaries(sweep_dir)) == ["depth=2", "depth=2,seed=1", "depth=3", "depth=3,seed=1"]
    assert "2 skipped" in result.stdout
    runs = pd.read_csv(sweep_dir / "runs.csv")
    assert sorted(zip(runs.depth, runs.seed)) == [(2, 0), (2, 1), (3, 0), (3, 1)], "each config once"
    hashes = [s["config_hash"] for s in summaries(sweep_dir).values()]
    assert len(hashes) == len(set(hashes))


def test_resume_leaves_skipped_runs_dirs_untouched(cli, sweep) -> None:
    result, sweep_dir = sweep("seed=0,1")
    assert result.exit_code == 0, result.stderr
    shutil.rmtree(sweep_dir / "seed=1")
    kept = hydra_files(sweep_dir / "seed=0")
    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 0, result.stderr
    assert hydra_files(sweep_dir / "seed=0") == kept, "a skipped run's .hydra/ was rewritten"


HOLD_LOCK = """
import sys, time
from pathlib import Path
from resbench.sweep_watch import sweep_lock
with sweep_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_process_on_a_live_sweep_is_refused_and_a_dead_holder_is_no_lock(cli, sweep) -> None:
    result, sweep_dir = sweep("seed=0")
    assert result.exit_code == 0, result.stderr
    (sweep_dir / "run" / "summary.json").unlink()  # something for a resume to run
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(sweep_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = cli("sweep", "--resume", str(sweep_dir))
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by pid {holder.pid} on" in lines[0], result.stderr
        assert not (sweep_dir / "run" / "summary.json").exists(), "the refused resume ran something"
    finally:
        holder.kill()  # kill -9: the lock dies with its holder
        holder.wait()
    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 0, result.stderr
    assert summaries(sweep_dir)["run"]["status"] == "completed"


def test_resume_never_writes_into_a_run_a_live_process_owns(cli, sweep) -> None:
    """A worker that outlived its sweep (kill -9 of the controller) still runs a run: resume refuses."""
    result, sweep_dir = sweep("seed=0")
    assert result.exit_code == 0, result.stderr
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        summary_path = sweep_dir / "run" / "summary.json"
        records.write_json(summary_path, {**json.loads(summary_path.read_text()), "status": "running",
                                          "pid": worker.pid})
        before = signature(summary_path)
        result = cli("sweep", "--resume", str(sweep_dir))
        assert result.exit_code == 2, result.output
        assert f"live process {worker.pid}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert signature(summary_path) == before
    finally:
        worker.kill()
        worker.wait()
    result = cli("sweep", "--resume", str(sweep_dir))  # its owner is dead: a killed run, rerun
    assert result.exit_code == 0, result.stderr
    assert summaries(sweep_dir)["run"]["status"] == "completed"


def test_no_worker_of_the_default_launcher_outlives_its_sweep(sweep) -> None:
    """joblib keeps idle workers for reuse; one left alive would pass for the live owner of its last run."""
    result, sweep_dir = sweep("seed=0,1", "hydra.launcher.n_jobs=2")
    assert result.exit_code == 0, result.stderr
    pids = {summary["pid"] for summary in summaries(sweep_dir).values()}
    assert os.getpid() not in pids, "the runs ran in worker processes"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_notices_its_controller_is_gone() -> None:
    import socket

    from resbench.sweep_watch import die_with_controller

    controller = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    orphaned = []
    try:
        thread = die_with_controller(f"{controller.pid}@{socket.gethostname()}", lambda: orphaned.append(1),
                                     interval=0.05)
        assert thread is not None
        time.sleep(0.2)
        assert orphaned == [], "the controller is alive"
    finally:
        controller.kill()
        controller.wait()
    thread.join(timeout=5)
    assert orphaned == [1]
    assert die_with_controller(f"{os.getpid()}@another-host", lambda: None) is None  # SLURM: not ours to watch


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize("where", ["loop", "setup"])
def test_a_run_that_raises_is_recorded_failed_and_the_sweep_goes_on(sweep, monkeypatch, where: str) -> None:
    broken = getattr(trainer.Trainer, where)

    def maybe_raise(self, *args):
        if self.config["seed"] == 1:
            raise RuntimeError("boom in seed 1")
        return broken(self, *args)

    monkeypatch.setattr(trainer.Trainer, where, maybe_raise)  # in this process: so the in-process launcher
    result, sweep_dir = sweep("depth=2", "seed=0,1,2", "hydra/launcher=basic")
    assert result.exit_code == 1
    done = summaries(sweep_dir)
    assert [done[f"seed={s}"]["status"] for s in range(3)] == ["completed", "failed", "completed"]
    assert done["seed=1"]["error"] == "RuntimeError: boom in seed 1"
    assert pd.read_csv(sweep_dir / "runs.csv").status.tolist() == ["completed", "failed", "completed"]
    assert "boom in seed 1" in result.stdout  # in its line and in the table


def test_a_diverging_run_does_not_stop_the_sweep(sweep) -> None:
    result, sweep_dir = sweep("depth=2", "train.optimizer=sgd", "train.steps=20", "train.lr=0.01,1e6,0.02")
    assert result.exit_code == 0, result.stderr
    statuses = pd.read_csv(sweep_dir / "runs.csv").set_index("train.lr").status
    assert statuses.tolist() == ["completed", "diverged", "completed"]


def test_sigint_leaves_valid_files_and_resume_finishes(cli, tmp_path: Path) -> None:
    """Ctrl-C in the second of three runs: the first stays completed, the second ends interrupted with
    readable CSVs, the third never starts, exit 130; --resume reruns the second and runs the third."""
    sweep_dir = tmp_path / "sweep"
    args = [*TINY, "depth=2", "train.steps=150", "log_every=5", "seed=0,1,2", "hydra/launcher=basic",
            f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "resbench.cli", "sweep", "--quiet", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = sweep_dir / "seed=1" / "metrics.csv"
        deadline = time.monotonic() + 90
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 4):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the second run never got going"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    done = summaries(sweep_dir)
    assert {name: s["status"] for name, s in done.items()} == {"seed=0": "completed", "seed=1": "interrupted"}
    assert pd.read_csv(sweep_dir / "runs.csv").status.tolist() == ["completed", "interrupted"]
    interrupted = pd.read_csv(sweep_dir / "seed=1" / "metrics.csv")
    assert 0 < len(interrupted) and interrupted.step.max() < 149
    first = run_files(sweep_dir / "seed=0")

    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 0, result.stderr
    assert run_files(sweep_dir / "seed=0") == first
    assert pd.read_csv(sweep_dir / "runs.csv").status.tolist() == ["completed"] * 3
    assert pd.read_csv(sweep_dir / "seed=1" / "metrics.csv").step.max() == 149


def test_sigint_on_the_default_launcher_interrupts_the_runs_in_flight_and_resume_finishes(cli, tmp_path: Path) -> None:
    """The default (side by side): Ctrl-C ends every run in flight `interrupted` with readable CSVs and
    starts no further run, exit 130; --resume finishes them all."""
    sweep_dir = tmp_path / "sweep"
    args = [*TINY, "depth=2", "train.steps=300", "log_every=5", "seed=0,1,2,3,4", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "resbench.cli", "sweep", "--quiet", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not any(len(m.read_text().splitlines()) >= 4 for m in sweep_dir.glob("*/metrics.csv")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no run got going"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    statuses = {name: s["status"] for name, s in summaries(sweep_dir).items()}
    assert "interrupted" in statuses.values() and set(statuses.values()) <= {"completed", "interrupted"}
    assert len(statuses) < 5, "no further run starts after Ctrl-C"
    for name in statuses:
        assert len(pd.read_csv(sweep_dir / name / "metrics.csv")) > 0
    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 0, result.stderr
    assert pd.read_csv(sweep_dir / "runs.csv").status.tolist() == ["completed"] * 5


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("overrides", "message"), [
    (["depth=2,0"], "depth=0: depth must be an integer >= 1, got 0"),
    (["norm=pre,bogus"], "valid choices: post, pre"),
    (["seed=range(0)"], "the sweep list is empty"),
    (["dpth=2,3"], "did you mean 'depth'"),
    (["hydra/launcher=bogus"], "valid choices: basic, joblib"),
    (["depth=2,2"], "share the run dir"),
    (["depth=range(2"], "cannot parse override"),
])
def test_bad_input_exits_2_with_one_line_and_leaves_no_sweep_dir(cli, tmp_path: Path, overrides, message) -> None:
    result = cli("sweep", *TINY, *overrides)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "results").exists()


def test_resuming_a_folder_that_is_not_a_sweep_exits_2(cli, tmp_path: Path) -> None:
    result = cli("sweep", "--resume", str(tmp_path))
    assert result.exit_code == 2 and "no sweep to resume" in result.stderr
    result = cli("sweep", "--resume")
    assert result.exit_code == 2 and "no sweep to resume" in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("[]", "not a JSON object"),
    ("{not json", "not a JSON object"),
    ('{"overrides": "depth=2"}', "'overrides' must be a list of strings"),
    ('{"overrides": [1, 2]}', "'overrides' must be a list of strings"),
    ('{"overrides": ["depth=[1,2"]}', "cannot parse override"),
], ids=["a list", "unparsable", "a string", "not strings", "bad grammar"])
def test_a_malformed_sweep_json_is_one_line(cli, tmp_path: Path, content: str, message: str) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(content)
    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "sweep.json" in lines[0], result.stderr
    assert [p.name for p in sweep_dir.iterdir()] == ["sweep.json"]


PLANTED_CALLBACK = """
from pathlib import Path
Path(__file__).with_name("imported").touch()
class Callback:
    def __init__(self, *args, **kwargs):
        Path(__file__).with_name("called").touch()
"""


@pytest.mark.parametrize("tampered", [
    "+hydra.callbacks.planted._target_=resbench_planted.Callback",
    "hydra.job.env_set.PYTHONPATH=/tmp",
    "+hydra.launcher.setup=[touch /tmp/planted]",
    "hydra.searchpath=[file:///tmp]",
    "+planted._target_=resbench_planted.Callback",
    "~depth",
], ids=["callback", "env_set", "setup", "searchpath", "target", "delete"])
def test_a_tampered_sweep_json_can_make_resume_import_nothing(cli, sweep, tmp_path: Path, monkeypatch,
                                                             tampered: str) -> None:
    """Result files are data: a sweep.json edited to add Hydra callbacks (or any Hydra setting that
    imports, calls or runs something) is refused with one line before anything is imported or run."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "resbench_planted.py").write_text(PLANTED_CALLBACK)
    result, sweep_dir = sweep("seed=0")
    assert result.exit_code == 0, result.stderr
    record = json.loads((sweep_dir / "sweep.json").read_text())
    record["overrides"].append(tampered)
    (sweep_dir / "sweep.json").write_text(json.dumps(record))
    (sweep_dir / "run" / "summary.json").unlink()  # so that resuming would run something
    result = cli("sweep", "--resume", str(sweep_dir))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing its override" in lines[0] and tampered in lines[0], result.stderr
    assert not (tmp_path / "imported").exists() and not (tmp_path / "called").exists()
    assert not (sweep_dir / "run" / "summary.json").exists(), "nothing ran"


def test_stored_launcher_settings_and_presets_still_resume(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    stored = [*TINY, "+experiment=dong2021", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
              "hydra.sweeper.max_batch_size=4", "depth=2,3"]
    (sweep_dir / "sweep.json").write_text(json.dumps({"overrides": stored}))
    plan = sweeps.plan_sweep([], resume=True, resume_dir=sweep_dir)
    assert plan.launcher == "joblib" and plan.overrides == stored


def test_a_new_sweep_never_writes_into_an_existing_sweep(sweep) -> None:
    result, _ = sweep("seed=0")
    assert result.exit_code == 0, result.stderr
    result, _ = sweep("seed=0")
    assert result.exit_code == 2 and "not empty" in result.stderr


# ----------------------------------------------------------------------------- threads
def test_thread_budget_shares_the_cores_among_parallel_runs() -> None:
    assert parallel_runs("basic", {}, None, 8, cores=4) == 1
    assert parallel_runs("joblib", {"n_jobs": 2}, None, 8, cores=4) == 2
    assert parallel_runs("joblib", {"n_jobs": -1}, None, 8, cores=4) == 4
    assert parallel_runs("joblib", {"n_jobs": 8}, None, 3, cores=4) == 3
    assert parallel_runs("submitit_local", {}, None, 5, cores=4) == 5
    assert parallel_runs("submitit_local", {}, 2, 5, cores=4) == 2  # hydra.sweeper.max_batch_size
    assert parallel_runs("submitit_slurm", {}, None, 5, cores=4) == 1
    assert thread_budget(None, {PARALLEL_RUNS_ENV: "2"}, cores=8) == 4
    assert thread_budget(None, {PARALLEL_RUNS_ENV: "4"}, cores=2) == 1
    assert thread_budget(None, {}, cores=8) == 8
    assert thread_budget(3, {PARALLEL_RUNS_ENV: "4"}, cores=2) == 3  # threads= wins
    assert thread_budget(None, {"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "2", PARALLEL_RUNS_ENV: "4"},
                         cores=16) == 2


def test_the_slurm_environment_is_read_in_one_place() -> None:
    from resbench import slurm

    array = {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3",
             "SLURM_CPUS_PER_TASK": "6", "SLURM_RESTART_COUNT": "2"}
    assert (slurm.job_id(array), slurm.cpus(array), slurm.requeues(array)) == ("40_3", 6, 2)
    assert (slurm.job_id({"SLURM_JOB_ID": "41"}), slurm.cpus({"SLURM_JOB_ID": "41"})) == ("41", None)
    assert (slurm.job_id({}), slurm.cpus({"SLURM_CPUS_PER_TASK": "6"}), slurm.requeues({})) == (None, None, 0)


# ----------------------------------------------------------------------------- worker launchers
def test_joblib_runs_a_sweep_in_worker_processes(sweep) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs resbench[joblib]")
    result, sweep_dir = sweep("depth=2", "seed=0,1", "threads=null", "hydra/launcher=joblib",
                              "hydra.launcher.n_jobs=2")
    assert result.exit_code == 0, result.stderr
    done = summaries(sweep_dir)
    assert [s["status"] for s in done.values()] == ["completed", "completed"]
    assert all(s["pid"] != os.getpid() for s in done.values())
    assert all(s["threads"] == max(1, usable_cores() // 2) for s in done.values())
    assert len(pd.read_csv(sweep_dir / "runs.csv")) == 2
    assert "2 at once" in result.stdout


def test_submitit_local_runs_a_sweep_in_job_processes(sweep) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs resbench[slurm]")
    result, sweep_dir = sweep("depth=2", "seed=0,1", "threads=null", "hydra/launcher=submitit_local",
                              "hydra.launcher.timeout_min=5")
    assert result.exit_code == 0, result.stderr
    done = summaries(sweep_dir)
    assert [s["status"] for s in done.values()] == ["completed", "completed"]
    assert all(s["pid"] != os.getpid() and s["slurm_job_id"] is None for s in done.values())
    assert all(s["threads"] == max(1, usable_cores() // 2) for s in done.values())
    assert len(pd.read_csv(sweep_dir / "runs.csv")) == 2


def test_the_longest_runs_start_first_and_dirs_and_runs_csv_keep_the_given_order(sweep) -> None:
    # In-process, one after another: the order Hydra numbered the jobs (hydra.job.num) is the start order.
    result, sweep_dir = sweep("depth=1,4,2", "hydra/launcher=basic")
    assert result.exit_code == 0, result.stderr
    started = sorted(("depth=1", "depth=4", "depth=2"), key=lambda name: OmegaConf.load(
        sweep_dir / name / ".hydra" / "hydra.yaml").hydra.job.num)
    assert started == ["depth=4", "depth=2", "depth=1"]  # cost: depth × steps × width² × tokens
    assert json.loads((sweep_dir / "sweep.json").read_text())["runs"] == ["depth=1", "depth=4", "depth=2"]
    assert pd.read_csv(sweep_dir / "runs.csv").run.tolist() == ["depth=1", "depth=4", "depth=2"]


def test_expected_cost_is_blocks_steps_width_squared_and_tokens(tmp_path: Path) -> None:
    plan = sweeps.plan_sweep([*TINY, "depth=1,4", "width=16,32", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    tokens = 4 * 8  # batch_size × seq_len
    costs = {run.name: run.cost for run in plan.runs}
    assert costs == {f"depth={d},width={w}": float(d * 3 * w**2 * tokens) for d in (1, 4) for w in (16, 32)}
    # depth=4,width=16 and depth=1,width=32 cost the same: they keep the given order
    ties = [name for name in (run.name for run in plan.runs) if costs[name] == costs["depth=1,width=32"]]
    assert [run.name for run in plan.launch_order] == ["depth=4,width=32", *ties, "depth=1,width=16"]


def test_a_parallel_sweep_writes_the_same_layers_csv_as_basic(sweep) -> None:
    parallel, parallel_dir = sweep("depth=1,2", "hydra.launcher.n_jobs=2", name="parallel")
    basic, basic_dir = sweep("depth=1,2", "hydra/launcher=basic", name="basic")
    assert parallel.exit_code == 0 and basic.exit_code == 0, parallel.stderr + basic.stderr
    assert json.loads((parallel_dir / "sweep.json").read_text())["launcher"] == "joblib"
    for run in ("depth=1", "depth=2"):
        assert (parallel_dir / run / "layers.csv").read_bytes() == (basic_dir / run / "layers.csv").read_bytes()


def test_process_tree_lists_children_and_their_descendants() -> None:
    """What Ctrl-C stops: a child and the child it starts (a submitit controller and its task)."""
    from resbench.sweep_watch import _process_tree

    code = "import subprocess, sys, time; p = subprocess.Popen(['sleep', '30']); print(p.pid, flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        children, descendants = _process_tree()
        assert child.pid in children and grandchild not in children
        assert {child.pid, grandchild} <= descendants
    finally:
        os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait()
