"""Every table of code keyed by a choice's name holds exactly the names of resbench/registries.py, in its order:
a name added in one place and not the other fails here, not in a user's run."""

from __future__ import annotations

import pytest

from resbench import config, loggers, models, precision, registries, tasks, trainer, validate
from resbench.models.placements import NORM_SLOTS

TABLES = {  # what the code behind each name is → the registry's names
    "models.PLACEMENTS": (models.PLACEMENTS, registries.PLACEMENTS),
    "placements.NORM_SLOTS": (NORM_SLOTS, registries.PLACEMENTS),
    "models.NORMS": (models.NORMS, registries.NORM_TYPES),
    "models.RESIDUALS": (models.RESIDUALS, registries.RESIDUALS),
    "models.INITS": (models.INITS, registries.INITS),
    "models.DEPTH_PARAMS": (models.DEPTH_PARAMS, registries.DEPTH_PARAMS),
    "trainer.OPTIMIZERS": (trainer.OPTIMIZERS, registries.OPTIMIZERS),
    "validate.OPTIMIZER_STATES": (validate.OPTIMIZER_STATES, registries.OPTIMIZERS),
    "tasks.FOOTPRINTS": (tasks.FOOTPRINTS, tasks.TASKS),
    "precision.PRECISIONS": (precision.PRECISIONS, registries.PRECISIONS),
    "loggers.LOGGERS": (loggers.LOGGERS, registries.LOGGERS),
    "config.Placement": (config.Placement.__members__, registries.PLACEMENTS),
    "config.NormType": (config.NormType.__members__, registries.NORM_TYPES),
    "config.Init": (config.Init.__members__, (registries.AUTO_INIT, *registries.INITS)),
    "config.Optimizer": (config.Optimizer.__members__, registries.OPTIMIZERS),
    "config.DepthParam": (config.DepthParam.__members__, registries.DEPTH_PARAMS),
    "config.Device": (config.Device.__members__, registries.DEVICES),
    "config.PrecisionName": (config.PrecisionName.__members__, registries.PRECISIONS),
    "config.Logger": (config.Logger.__members__, registries.LOGGERS),
}


@pytest.mark.parametrize("table", list(TABLES))
def test_each_table_is_keyed_by_the_registry_names(table):
    implementation, names = TABLES[table]
    assert list(implementation) == list(names)


@pytest.mark.parametrize("value, name", [(True, "true"), (False, "false"), ("rezero", "rezero"), ("True", "true")])
def test_a_yaml_bool_residual_reads_as_its_name(value, name):
    assert registries.residual_name(value) == name and name in registries.RESIDUALS


def test_a_logger_without_its_extra_is_unavailable(monkeypatch):
    assert registries.logger_available("none")
    monkeypatch.setitem(registries.LOGGER_MODULES, "tensorboard", ("resbench_no_such_module",))
    assert not registries.logger_available("tensorboard")


def test_cluster_launchers_are_launchers() -> None:
    assert set(registries.CLUSTER_LAUNCHERS) <= set(registries.LAUNCHER_PLUGINS)
