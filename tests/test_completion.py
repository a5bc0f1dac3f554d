"""Shell completion: command names, override keys and choice values, all without importing torch or Hydra."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resbench import loggers, registries, trainer
from resbench.completion import CHOICE_REGISTRIES, choices, override_keys
from resbench.config import check
from resbench.models import DEPTH_PARAMS, INITS, NORMS, PLACEMENTS, RESIDUALS
from resbench.precision import PRECISIONS

# Prints, as the interpreter exits, which heavy libraries the command imported.
REPORT_IMPORTS = ("import atexit, sys; atexit.register(lambda: print('IMPORTED', sorted(m for m in "
                  "('torch', 'hydra', 'pandas', 'matplotlib') if m in sys.modules))); "
                  "sys.argv = ['resbench', *sys.argv[1:]]; from resbench.cli import main; main()")


def resbench(*args: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", REPORT_IMPORTS, *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)
    return done.stdout


def test_choice_values_are_the_registries_names():
    imported = {"norm": list(PLACEMENTS), "norm_type": list(NORMS), "residual": list(RESIDUALS),
                "init": ["auto", *INITS], "depth_param": list(DEPTH_PARAMS), "device": ["auto", "cpu", "cuda"],
                "precision": list(PRECISIONS),
                "train.optimizer": list(trainer.OPTIMIZERS), "logger": list(loggers.LOGGERS),
                "hydra/launcher": ["basic", *registries.LAUNCHER_PLUGINS]}
    assert set(imported) == set(CHOICE_REGISTRIES)
    for key, names in imported.items():
        assert choices(key) == names, key
    assert choices("model.norm") == list(PLACEMENTS)
    assert choices("model") == ["mlp", "seq2seq", "transformer"] and "xiong2020" in choices("+experiment")


def flatten(node: dict, prefix: str = "") -> list[str]:
    return [k for name, value in node.items()
            for k in (flatten(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])]


@pytest.mark.parametrize("overrides", [[], ["model=mlp", "task=digits"], ["task=reverse"]])
def test_every_key_of_the_composed_config_is_offered(overrides):
    assert set(flatten(check(overrides))) <= set(override_keys())


def test_tab_after_norm_offers_the_placements_in_every_shell_without_torch():
    zsh = resbench(_RESBENCH_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="resbench sweep depth=6 norm=")
    for name in PLACEMENTS:
        assert f'"norm={name}"' in zsh
    assert "IMPORTED []" in zsh
    bash = resbench(_RESBENCH_COMPLETE="complete_bash", COMP_WORDS="resbench sweep norm = s", COMP_CWORD="4")
    assert bash.splitlines()[0] == "sandwich"  # bash splits the word at '=': only the value is completed
    keys = resbench(_RESBENCH_COMPLETE="complete_bash", COMP_WORDS="resbench train train.w", COMP_CWORD="2")
    assert keys.splitlines()[:2] == ["train.warmup=", "train.weight_decay="]
    commands = resbench(_RESBENCH_COMPLETE="complete_bash", COMP_WORDS="resbench s", COMP_CWORD="1")
    assert commands.splitlines()[0] == "sweep"


def test_help_offers_completion_and_imports_nothing_heavy():
    out = resbench("--help")
    assert "--install-completion" in out and "IMPORTED []" in out
