"""`resbench train` end to end: the run directory contract, repeatability, divergence, interruption,
a light `--help`, and configs that ship inside the package."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml

METRIC_COLUMNS = ["step", "loss", "val_loss", "lr", "grad_norm", "elapsed_s"]
GRAD_NORM_COLUMNS = ["step", "layer", "stack", "param", "grad_norm"]
BLOCK_PARAMS = {"attn.qkv.weight", "attn.qkv.bias", "attn.out.weight", "attn.out.bias", "ffn.fc1.weight",
                "ffn.fc1.bias", "ffn.fc2.weight", "ffn.fc2.bias", "norm1.weight", "norm1.bias",
                "norm2.weight", "norm2.bias"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split(",")


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def test_train_writes_the_run_dir_contract(train_cli) -> None:
    run = train_cli("train.steps=8", "log_every=3")
    assert run.exit_code == 0, run.stderr
    assert {p.name for p in run.dir.iterdir()} >= {
        ".hydra", "config.yaml", "metrics.csv", "grad_norms.csv", "layers.csv", "summary.json"}
    assert (run.dir / ".hydra" / "overrides.yaml").is_file()

    config_text = (run.dir / "config.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(config_text)
    assert "${" not in config_text and "hydra" not in config, "config.yaml is the resolved config"
    assert config["depth"] == 2 and "depth" not in config["model"], "each model key once, at the root"

    assert header(run.dir / "metrics.csv") == METRIC_COLUMNS
    assert header(run.dir / "grad_norms.csv") == GRAD_NORM_COLUMNS
    assert header(run.dir / "layers.csv")[:4] == ["step", "layer", "stack", "grad_norm"]

    logged = {0, 3, 6, 7}  # step 0, every log_every, and the last step
    evaluated = {1, 3, 5, 7}  # every train.eval_every=2, and the last step
    metrics = pd.read_csv(run.dir / "metrics.csv")
    assert list(metrics.step) == list(range(8))  # a row every step: loss and lr always, the rest where measured
    assert set(metrics.step[metrics.grad_norm.notna()]) == logged
    assert set(metrics.step[metrics.val_loss.notna()]) == evaluated
    assert metrics.loss.notna().all() and (metrics.lr == config["train"]["lr"]).all()
    assert metrics.elapsed_s.is_monotonic_increasing

    grad_norms = pd.read_csv(run.dir / "grad_norms.csv", dtype={"layer": "Int64"})
    assert set(grad_norms.step) == logged
    outside = grad_norms[grad_norms.layer.isna()]
    inside = grad_norms[grad_norms.layer.notna()]
    assert set(outside.param) >= {"tok_emb.weight", "pos_emb.weight", "head.weight", "head.bias"}
    assert not outside.param.str.startswith("blocks.").any()
    for (_, layer), names in inside.groupby(["step", "layer"]).param:
        assert set(names) == BLOCK_PARAMS, layer
    assert set(inside.layer) == {0, 1}
    assert (grad_norms.grad_norm > 0).all()

    layers = pd.read_csv(run.dir / "layers.csv")
    assert set(layers.step) == logged
    assert list(layers.layer[layers.step == 0]) == [0, 1]

    done = summary(run.dir)
    assert done["status"] == "completed" and done["steps_done"] == 8 and done["error"] is None
    assert math.isfinite(done["final_loss"]) and math.isfinite(done["final_val_loss"])


def test_same_seed_gives_identical_files(train_cli) -> None:
    first, second = train_cli("seed=3", name="first"), train_cli("seed=3", name="second")
    assert first.exit_code == second.exit_code == 0, first.stderr + second.stderr
    for name in ("grad_norms.csv", "layers.csv"):
        assert (first.dir / name).read_bytes() == (second.dir / name).read_bytes(), name
    metrics = [pd.read_csv(run.dir / "metrics.csv").drop(columns="elapsed_s") for run in (first, second)]
    pd.testing.assert_frame_equal(*metrics)
    other = train_cli("seed=4", name="other")
    assert (other.dir / "grad_norms.csv").read_bytes() != (first.dir / "grad_norms.csv").read_bytes()


def test_a_run_that_blows_up_ends_diverged_and_keeps_its_files(train_cli) -> None:
    """SGD at lr 1e6 makes the loss non-finite at step 2 (checked); default log_every=10 logs no
    gradient there, so the divergence is caught from the loss alone."""
    run = train_cli("train.optimizer=sgd", "train.lr=1e6", "train.steps=20", "log_every=10")
    assert run.exit_code == 0, run.stderr
    done = summary(run.dir)
    assert done["status"] == "diverged"
    assert 0 < done["steps_done"] < 20
    metrics = pd.read_csv(run.dir / "metrics.csv")
    assert metrics.step.iloc[0] == 0 and math.isfinite(metrics.loss.iloc[0])
    assert metrics.step.iloc[-1] == done["steps_done"], "the step that diverged is recorded"
    assert not math.isfinite(metrics.loss.iloc[-1])  # non-finite losses are written as empty cells
    assert pd.read_csv(run.dir / "grad_norms.csv").step.min() == 0


def test_trains_on_a_text_file(train_cli, text_file: Path) -> None:
    run = train_cli(f"task.path={text_file}", "train.steps=4")
    assert run.exit_code == 0, run.stderr
    metrics = pd.read_csv(run.dir / "metrics.csv").set_index("step")
    assert metrics.val_loss[[1, 3]].notna().all()
    assert metrics.val_loss.drop([1, 3]).isna().all()
    done = summary(run.dir)
    assert done["status"] == "completed" and math.isfinite(done["final_val_loss"])
    config = yaml.safe_load((run.dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["task"]["path"] == str(text_file)


# ---- in a real process ------------------------------------------------------------------------


def resbench(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m resbench.cli ARGS…` with SIGINT at its default, whatever the test runner's is."""
    return subprocess.Popen(
        [sys.executable, "-m", "resbench.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **kwargs,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - no threads here
    )


def wait_for_rows(path: Path, rows: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text(encoding="utf-8").splitlines()) > rows:
            return
        if process.poll() is not None:
            pytest.fail(f"resbench exited early ({process.returncode}): {process.communicate()[1]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {rows} rows in {path} after {timeout} s")


@contextmanager
def killed_on_exit(*processes: subprocess.Popen) -> Iterator[None]:
    """However the test ends, no resbench process it started outlives it."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_a_signal_interrupts_the_run_and_keeps_valid_rows(tmp_path: Path, tiny: list[str]) -> None:
    """SIGINT (Ctrl-C) and SIGTERM, each to its own real process (started together to save time)."""
    processes = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        run_dir = tmp_path / sig.name
        processes[sig] = run_dir, resbench("train", "--quiet", *tiny, "train.steps=1000000", "log_every=1",
                                           f"hydra.run.dir={run_dir}", cwd=tmp_path)
    with killed_on_exit(*(process for _, process in processes.values())):
        for sig, (run_dir, process) in processes.items():
            wait_for_rows(run_dir / "metrics.csv", 3, process)
            process.send_signal(sig)
        for sig, (run_dir, process) in processes.items():
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 130, (sig.name, stderr)
            assert "Traceback" not in stderr, stderr
            check_interrupted_run(run_dir)


def check_interrupted_run(run_dir: Path) -> None:
    done = summary(run_dir)
    assert done["status"] == "interrupted"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    grad_norms = pd.read_csv(run_dir / "grad_norms.csv")
    layers = pd.read_csv(run_dir / "layers.csv")
    assert len(metrics) >= 3
    for frame, columns in ((metrics, METRIC_COLUMNS), (grad_norms, GRAD_NORM_COLUMNS)):
        assert list(frame.columns) == columns
        assert frame.step.notna().all() and frame.grad_norm.notna().all()  # every row whole
    assert layers.grad_norm.notna().all() and set(layers.layer) <= {0, 1}
    assert metrics.step.max() <= done["steps_done"]


def test_help_imports_neither_torch_nor_hydra() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['resbench', '--help']\n"
        "import resbench.cli\n"
        "try:\n"
        "    resbench.cli.main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'hydra', 'omegaconf', 'pandas'))\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout
    assert "HEAVY []" in done.stdout, done.stdout.splitlines()[-1]


@pytest.mark.slow
def test_wheel_ships_the_configs(tmp_path: Path) -> None:
    """A non-editable install finds its configs: the wheel holds resbench/conf/**.yaml."""
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        pytest.skip("not run from a source checkout")
    try:
        import setuptools  # noqa: F401  (the build backend, used without build isolation: no network)
    except ImportError:
        pytest.skip("setuptools is not installed; building the wheel would need the network")
    # Build from a copy, so the source tree gets no build/ or egg-info of the test's making.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (PROJECT_ROOT / name).exists():
            shutil.copy(PROJECT_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("resbench", "conf"):
        shutil.copytree(PROJECT_ROOT / name, source / name, ignore=ignore)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(wheels), str(source)],
        check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = wheels.glob("resbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"resbench/conf/config.yaml", "resbench/conf/model/transformer.yaml",
            "resbench/conf/task/chars.yaml", "resbench/conf/__init__.py", "resbench/cli.py"} <= names


# ---- work done once per run ----------------------------------------------------------------------
def test_a_run_composes_its_config_and_builds_its_task_once(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    """`resbench train` composes the config once (checked, then run as it is) and builds the task once
    (the check's task is the trainer's)."""
    from resbench import config, hydra_adapter, tasks

    calls: list[str] = []

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(hydra_adapter, "compose", counted("compose", hydra_adapter.compose))
    monkeypatch.setattr(hydra_adapter, "compose_run", counted("compose", hydra_adapter.compose_run))
    monkeypatch.setattr(config, "build_task", counted("build", config.build_task))
    monkeypatch.setattr(tasks, "build", counted("build", tasks.build))
    result = cli("train", "--quiet", *tiny, f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 0, result.output
    assert summary(tmp_path / "run")["status"] == "completed"
    assert sorted(calls) == ["build", "compose"]


# ---- faults during setup and at the end ---------------------------------------------------------
def test_a_failure_while_building_the_run_is_recorded_failed(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    """An exception after the run dir exists (here: a model too large to allocate) ends the run
    `failed` with its error in summary.json, exit 1, no traceback."""
    from resbench import trainer

    def cannot_allocate(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(trainer.models, "build", cannot_allocate)
    result = cli("train", *tiny, f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    done = summary(tmp_path / "run")
    assert done["status"] == "failed"
    assert done["error"] == "RuntimeError: DefaultCPUAllocator: can't allocate memory"
    assert "can't allocate memory" in result.stdout and "Traceback" not in result.output


def test_an_interrupt_during_setup_leaves_the_run_interrupted(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    from resbench import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.models, "build", interrupted)
    result = cli("train", "--quiet", *tiny, f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 130, result.output
    assert summary(tmp_path / "run")["status"] == "interrupted"


def test_sigterm_while_starting_up_exits_130(tmp_path: Path, tiny: list[str]) -> None:
    """A SIGTERM while torch is still being imported ends like one during the run."""
    process = resbench("train", "--quiet", *tiny, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    with killed_on_exit(process):
        time.sleep(1.0)  # the CLI is up, torch is loading (it takes seconds)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    if (tmp_path / "run" / "summary.json").exists():
        assert summary(tmp_path / "run")["status"] == "interrupted"


@pytest.mark.slow
def test_two_quick_ctrl_c_still_end_the_run_interrupted(tmp_path: Path, tiny: list[str]) -> None:
    """The second Ctrl-C arrives while the first one's final status is being written: that write
    completes (signals wait for it), so summary.json says interrupted and no temporary file is left."""
    run_dir = tmp_path / "run"
    process = resbench("train", "--quiet", *tiny, "train.steps=1000000", "log_every=1",
                       f"hydra.run.dir={run_dir}", cwd=tmp_path)
    with killed_on_exit(process):
        wait_for_rows(run_dir / "metrics.csv", 3, process)
        process.send_signal(signal.SIGINT)
        time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert summary(run_dir)["status"] == "interrupted"
    assert not list(run_dir.glob(".*.tmp"))
