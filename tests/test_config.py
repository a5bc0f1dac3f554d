"""The typed config: the schemas refuse what they do not declare, each model key lives once, and the
spellings and records of older resbench still work."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from resbench import config, records
from resbench.models import MODELS, SHARED_MODEL_KEYS, model_keys
from resbench.tasks import TASKS
from resbench.validate import ConfigError


def test_every_option_of_conf_has_its_schema():
    conf = resources.files("resbench.conf")
    for group, schemas, registry in (("model", config.MODEL_SCHEMAS, MODELS), ("task", config.TASK_SCHEMAS, TASKS)):
        files = sorted(entry.name.removesuffix(".yaml") for entry in conf.joinpath(group).iterdir()
                       if entry.name.endswith(".yaml"))
        assert sorted(schemas) == files == sorted(registry), group


@pytest.mark.parametrize("overrides", [[], ["model=mlp", "task=digits"], ["model=seq2seq", "task=sort"]])
def test_each_model_key_lives_once_at_the_root(overrides):
    resolved = config.check(overrides)
    assert set(SHARED_MODEL_KEYS) <= set(resolved) and not set(SHARED_MODEL_KEYS) & set(resolved["model"])
    assert model_keys(resolved)["depth"] == resolved["depth"]


@pytest.mark.parametrize("edit, line", [
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"train": {"stpes": 3}}, "unknown key 'train.stpes' (did you mean 'steps'?)"),
    ({"depth": "abc"}, "depth must be an integer, got 'abc'"),
    ({"norm": "peri"}, "norm: bad choice 'peri'; valid choices: post, pre"),
    ({"train": {"optimizer": "lion"}}, "train.optimizer: bad choice 'lion'; valid choices: adam, adamw, sgd"),
    ({"model": {"decoder_depth": 2}}, "unknown key 'model.decoder_depth'"),  # seq2seq's own key
    ({"model": {"name": "rnn"}}, "model.name: bad choice 'rnn'; valid choices: transformer, mlp, seq2seq"),
    ({"task": 3}, "task must be a config group (task.KEY=VALUE), got 3"),
])
def test_a_config_dict_is_checked_against_the_schema(edit, line):
    resolved = config.check([])
    for key, value in edit.items():
        resolved[key] = {**resolved[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as raised:
        config.check_config(resolved)
    assert line in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_key_is_named():
    resolved = config.check([])
    del resolved["train"]["lr"]
    with pytest.raises(ConfigError, match=r"^train.lr is missing"):
        config.check_config(resolved)


def test_residual_keeps_its_bools_and_its_name():
    assert [config.check([f"residual={value}"])["residual"] for value in ("true", "false", "rezero")] == [
        True, False, "rezero"]


def test_the_older_model_spelling_sets_the_root_key():
    assert config.short_overrides(["model.depth=3", "+model.norm=post", "model.ffn_mult=2", "model=mlp"]) == [
        "depth=3", "+norm=post", "model.ffn_mult=2", "model=mlp"]
    resolved = config.check(["model.depth=3", "model.norm=post"])
    assert (resolved["depth"], resolved["norm"]) == (3, "post") and "depth" not in resolved["model"]


DEPTH_KEYS = ("depth_param", "base_depth", "branch_multiplier")  # added later: older runs lack them
OLDER_MODEL_KEYS = tuple(key for key in SHARED_MODEL_KEYS if key not in DEPTH_KEYS)


@pytest.mark.parametrize("overrides, copied", [
    (["depth=3"], OLDER_MODEL_KEYS),
    (["model=mlp", "task=digits"], tuple(key for key in OLDER_MODEL_KEYS if key != "heads")),  # mlp had no heads
])
def test_a_run_keeps_the_identity_older_resbench_recorded_for_it(overrides, copied):
    resolved = config.check(overrides)
    older = {**resolved, "model": {**{key: resolved[key] for key in copied}, **resolved["model"]}}
    for key in ("threads", "logger", *DEPTH_KEYS):
        del older[key]
    del older["train"]["checkpoint_every"]
    del older["precision"], older["init_draws"]  # keys added since, left out of the hash at their default
    expected = hashlib.sha256(json.dumps(older, sort_keys=True).encode()).hexdigest()[:16]
    assert records.config_hash(resolved) == expected
