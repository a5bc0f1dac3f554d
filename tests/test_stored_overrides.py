"""A resume reads overrides from a file (a run's .hydra/overrides.yaml, a sweep's sweep.json) that may have
been copied, downloaded or edited: such a file is data, never instructions. Only resbench's config keys, its
group choices and (sweep.json) the launcher's plain settings are taken from it; anything else is one line,
exit 2, nothing written and nothing imported. What the user types is theirs, as on any command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_checkpoint import run_files
from test_sweep import PLANTED_CALLBACK

from resbench.config import STORED_LAUNCHER_KEYS, BadInput, resumed_overrides

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("planted", [
    "+hydra.callbacks.planted._target_=resbench_planted.Callback",
    "hydra.job.env_set.PYTHONPATH=/tmp",
    "+hydra.launcher.setup=[touch /tmp/planted]",
    "hydra.searchpath=[file:///tmp]",
    "+planted._target_=resbench_planted.Callback",
    "hydra/launcher=joblib",
    "~depth",
], ids=["callback", "env_set", "setup", "searchpath", "target", "launcher", "delete"])
def test_train_resume_of_a_run_with_planted_overrides_runs_and_imports_nothing(
        train_cli, cli, tmp_path: Path, monkeypatch, planted: str) -> None:
    """A run dir someone hands over, its .hydra/overrides.yaml edited to add a Hydra callback (or any
    setting that could import, call or run something): `train --resume` refuses it with one line naming
    the override and the file, before anything is imported or written."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "resbench_planted.py").write_text(PLANTED_CALLBACK, encoding="utf-8")
    run = train_cli("train.checkpoint_every=null")
    assert run.result.exit_code == 0, run.result.stderr
    summary = json.loads((run.dir / "summary.json").read_text(encoding="utf-8"))
    (run.dir / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}), encoding="utf-8")
    stored = run.dir / ".hydra" / "overrides.yaml"
    stored.write_text(stored.read_text(encoding="utf-8") + f"- {planted}\n", encoding="utf-8")
    before = run_files(run.dir)
    result = cli("train", "--quiet", "--resume", str(run.dir))
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"refusing its override '{planted}'" in lines[0] and "overrides.yaml" in lines[0], lines[0]
    assert not (tmp_path / "imported").exists() and not (tmp_path / "called").exists()
    assert run_files(run.dir) == before, "nothing written"


def test_old_layout_keys_are_read_as_todays_and_a_key_given_again_replaces_them(tmp_path: Path) -> None:
    source = tmp_path / "overrides.yaml"
    assert resumed_overrides(["model.depth=2", "width=16", "+experiment=dong2021"], [], source) == [
        "depth=2", "width=16", "+experiment=dong2021"]
    assert resumed_overrides(["model.depth=2", "width=16"], ["model.depth=3"], source) == ["width=16", "depth=3"]


def test_launcher_settings_are_taken_from_a_sweep_record_only(tmp_path: Path) -> None:
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.max_batch_size=4"]
    assert resumed_overrides(["depth=2,3", *launcher], [], tmp_path / "sweep.json", launcher=True) == [
        "depth=2,3", *launcher]
    with pytest.raises(BadInput, match="refusing its override 'hydra/launcher=joblib'"):
        resumed_overrides(["depth=2", *launcher], [], tmp_path / "overrides.yaml")
    for value in ("${oc.env:HOME}", "{a: 1}"):
        with pytest.raises(BadInput, match="refusing its override"):
            resumed_overrides([f"hydra.launcher.partition={value}"], [], tmp_path / "sweep.json", launcher=True)


def test_what_the_user_gives_is_theirs_and_replaces_what_the_file_says(tmp_path: Path) -> None:
    """A setting the file may not give is given on the command line: the stored one is then not taken."""
    source = tmp_path / "sweep.json"
    given = ["+hydra.callbacks.mine._target_=my.Callback", "hydra.job.env_set.FOO=2"]
    assert resumed_overrides(["depth=2", "hydra.job.env_set.FOO=1"], given, source, launcher=True) == [
        "depth=2", *given]
    with pytest.raises(BadInput, match=re.escape(f"cannot resume from {source}: refusing its override "
                                                 "'hydra.job.env_set.FOO=1'")):
        resumed_overrides(["depth=2", "hydra.job.env_set.FOO=1"], ["depth=3"], source, launcher=True)


def test_an_unparsable_stored_override_names_its_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=re.escape(f"cannot resume from {tmp_path / 'overrides.yaml'}: cannot parse")):
        resumed_overrides(["depth=[2"], [], tmp_path / "overrides.yaml")


def test_the_launcher_settings_a_sweep_record_may_carry_are_the_ones_documented() -> None:
    text = (DOCS / "long-runs.md").read_text(encoding="utf-8")
    for key in STORED_LAUNCHER_KEYS:
        assert f"`{key.removeprefix('hydra.launcher.')}`" in text or f"`{key}`" in text, key
