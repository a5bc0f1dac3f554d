"""`resbench report DIR --tensorboard`: each run's TensorBoard events rebuilt from its CSVs, after the fact,
and the HParams sessions that let TensorBoard's HParams dashboard compare a sweep's runs.

The events are written by the same writer as a live run's (resbench/loggers.py), from the rows the report's
loader reads (resbench/report/load.py), so a run logged live and one converted later hold the same events.
Only TensorBoard's protobufs are used (no torch, no TensorFlow).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from resbench.loggers import EventWriter, Row, TensorBoardLogger, finite_number, scalar_summary
from resbench.records import read_json, replaced_dir
from resbench.report import aggregate, load
from resbench.schema import DONE, SUMMARY_JSON, TB_DIR

HPARAMS_SUFFIX = ".hparams"  # the event file holding a run's HParams session
HPARAM_METRICS = ("final_loss", "final_val_loss", "final_val_acc", "init_grad_ratio")  # summary → hparams/<name>


def hparams_summaries(hparams: Mapping[str, Any], metrics: Sequence[str], status: str) -> list:
    """The HParams plugin's experiment, session-start and session-end records for one run."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    def summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
        data.version = metadata.PLUGIN_DATA_VERSION
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
        return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    infos = []
    for name, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value, kind = value, "DATA_TYPE_BOOL"
        elif isinstance(value, (int, float)) and math.isfinite(value):
            start.hparams[name].number_value, kind = float(value), "DATA_TYPE_FLOAT64"
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        else:
            start.hparams[name].string_value, kind = str(value), "DATA_TYPE_STRING"
        infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(kind)))
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"hparams/{name}")) for name in metrics])
    end_status = api_pb2.Status.Value("STATUS_SUCCESS" if status in DONE else "STATUS_FAILURE")
    end = plugin_data_pb2.SessionEndInfo(status=end_status, end_time_secs=time.time())
    return [summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
            summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))]


def write_hparams(run_dir: Path, hparams: Mapping[str, Any], summary: Row) -> Path:
    """The run's HParams session into `<run>/tb/` (replacing an earlier one): `hparams` as its
    hyperparameters, the summary's final losses, val acc and init grad ratio as `hparams/<name>` metrics."""
    log_dir = Path(run_dir) / TB_DIR
    for old in log_dir.glob(f"*{HPARAMS_SUFFIX}"):
        old.unlink()
    writer = EventWriter(log_dir, HPARAMS_SUFFIX)
    metrics = {name: finite_number(summary.get(name)) for name in HPARAM_METRICS}
    metrics = {name: value for name, value in metrics.items() if value is not None}
    step = int(finite_number(summary.get("steps_done")) or 0)
    for record in hparams_summaries(hparams, list(metrics), str(summary.get("status"))):
        writer.add(record, step)
    writer.add(scalar_summary({f"hparams/{name}": value for name, value in metrics.items()}), step)
    writer.close()
    return log_dir


def heard(metrics: Row, logged: bool) -> bool:
    """Whether the trainer handed this metrics.csv row to its listeners (trainer.Trainer.record): a logged step's
    (`logged`: it has probe rows), an evaluated one's (a validation loss) or the diverging one's (no finite
    loss). metrics.csv has a row every step; the others are the file's alone."""
    return logged or finite_number(metrics.get("val_loss")) is not None or finite_number(metrics.get("loss")) is None


def write_run_events(run_dir: Path, metrics: Sequence[Row], grad_norms: Sequence[Row], layers: Sequence[Row]) -> Path:
    """`<run>/tb/` rebuilt from a run's CSV rows, as the live logger would have written it, and swapped in
    whole (records.replaced_dir): a fault or an interrupt leaves the old events whole."""
    target = Path(run_dir) / TB_DIR
    by_step: dict[int, tuple[list[Row], list[Row]]] = {}
    for row in grad_norms:
        by_step.setdefault(int(row["step"]), ([], []))[0].append(row)
    for row in layers:
        by_step.setdefault(int(row["step"]), ([], []))[1].append(row)
    with replaced_dir(target) as fresh:
        logger = TensorBoardLogger(fresh)
        for row in metrics:
            step = int(row["step"])
            if heard(row, step in by_step):
                step_grads, step_layers = by_step.get(step, ([], []))
                logger.log(row, step_grads, step_layers)
        logger.close({})
    return target


def _summary(run: Row) -> Row:
    """The run's summary.json (it holds init_grad_ratio, which the runs frame does not), else its row."""
    return read_json(Path(run["path"]) / SUMMARY_JSON) or run


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records") if len(frame) else []


def _rows_by_run(frame: pd.DataFrame) -> dict[int, list[dict[str, Any]]]:
    return {run: _records(rows) for run, rows in frame.groupby("run")}


def export(dirs: Sequence[Path]) -> list[Path]:
    """Every run's `tb/` rebuilt from its CSVs, with an HParams session whose hyperparameters are the
    report's grouping keys (a sweep's swept keys). Returns the `tb/` dirs."""
    run_set = load.load([Path(d) for d in dirs])
    keys = aggregate.group_keys(run_set)
    metrics, layers = _rows_by_run(run_set.metrics), _rows_by_run(run_set.layers)
    written = []
    for run in _records(run_set.runs):
        path = Path(run["path"])
        grad_norms = _records(load.read_grad_norms(path))
        written.append(write_run_events(path, metrics.get(run["run"], []), grad_norms, layers.get(run["run"], [])))
        write_hparams(path, {key: run[key] for key in keys}, _summary(run))
    return written


def write_sweep_hparams(sweep_dir: Path) -> list[Path]:
    """At the end of a sweep: an HParams session (swept keys, final metrics) for each run that logged to
    TensorBoard, so the HParams dashboard of `tensorboard --logdir SWEEP_DIR` compares the grid."""
    run_set = load.load([Path(sweep_dir)])
    keys = aggregate.group_keys(run_set)
    written = []
    for run in _records(run_set.runs):
        if run.get("logger") == "tensorboard" and (Path(run["path"]) / TB_DIR).is_dir():
            written.append(write_hparams(Path(run["path"]), {key: run[key] for key in keys}, _summary(run)))
    return written
