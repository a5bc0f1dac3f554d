"""Where a run's numbers go besides its CSVs: the `logger` config key's table, and TensorBoard event files.

A logger is a step listener: the trainer hands it the rows it has just appended to metrics.csv,
grad_norms.csv and layers.csv (as dicts by column name) and closes it with the summary. The same
code writes event files after the fact from those CSVs (`resbench report DIR --tensorboard`), so a
run logged live and one converted later hold the same events.

TensorBoard layout. Tags are `<quantity>/block_XX` (`grad_norm/block_03`, `hidden_rms/block_03`, …),
`loss/train`, `loss/val`, `lr`, `grad_norm/global`. The Scalars dashboard puts every tag of a quantity
under one heading but draws one chart per tag, and `add_scalars`' one-line-per-series charts cost
a sub-run directory (and an open event file) per block and quantity, which also floods the run list
and the HParams table. So each run also writes a Custom Scalars layout: one multiline chart per
quantity whose lines are the blocks (the Custom Scalars dashboard).

Only `tensorboard`'s protobufs and `crc32c` are used (no torch, no TensorFlow; see EventWriter), so the
conversion after the fact runs in the report's torch-free process.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from .schema import DONE, SUMMARY_JSON

TB_DIR = "tb"  # in a run dir
HPARAMS_SUFFIX = ".hparams"  # the event file holding a run's HParams session
BLOCK_QUANTITIES = ("grad_norm", "hidden_rms", "act_grad_norm", "update_ratio", "rank_residual")
RUN_SCALARS = {  # metrics.csv column → tag
    "loss": "loss/train",
    "val_loss": "loss/val",
    "val_acc": "val_acc",
    "lr": "lr",
    "grad_norm": "grad_norm/global",
}
HPARAM_METRICS = ("final_loss", "final_val_loss", "final_val_acc", "init_grad_ratio")  # summary → hparams/<name>
INSTALL_HINT = "logger=tensorboard needs TensorBoard: pip install 'resbench[tensorboard]'"

Row = Mapping[str, Any]


class StepListener(Protocol):
    """What the trainer calls besides its recorder: after each recorded step, and once at the end."""

    def log(self, metrics: Row, grad_norms: Sequence[Row], layers: Sequence[Row]) -> None: ...

    def close(self, summary: Row) -> None: ...


def _number(value: Any) -> float | None:
    """A CSV cell as a finite float, or None (empty, NaN, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@cache  # called for every block and quantity of every logged step
def block_tag(quantity: str, layer: int, stack: str | None = None, n_blocks: int = 0) -> str:
    """`grad_norm/block_03` (zero-padded to sort: three digits from 100 blocks); `grad_norm/encoder_block_03`
    for a seq2seq layer of the `encoder` stack."""
    digits = max(2, len(str(max(n_blocks - 1, 0))))
    return f"{quantity}/{stack + '_' if stack else ''}block_{int(layer):0{digits}d}"


def step_scalars(metrics: Row, layers: Sequence[Row], n_blocks: int = 0) -> dict[str, float]:
    """Tag → value for one step's rows; empty cells are left out."""
    scalars = {tag: _number(metrics.get(column)) for column, tag in RUN_SCALARS.items()}
    for row in layers:
        for quantity in BLOCK_QUANTITIES:
            scalars[block_tag(quantity, int(row["layer"]), row.get("stack") or None, n_blocks)] = _number(row.get(quantity))
    return {tag: value for tag, value in scalars.items() if value is not None}


# ---- protobufs ----------------------------------------------------------------------------------------


def _scalar_summary(scalars: Mapping[str, float]):
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])


def _histogram_summary(tag: str, values: Sequence[float], bins: int = 30):
    """`bins` equal buckets from min to max. Plain Python: for the few dozen values of a step it is ~10×
    faster than numpy.histogram's set-up."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0.0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    histogram = HistogramProto(min=low, max=high, num=len(values), sum=sum(values),
                               sum_squares=sum(v * v for v in values),
                               bucket_limit=[low + width * (i + 1) for i in range(bins)], bucket=counts)
    return Summary(value=[Summary.Value(tag=tag, histo=histogram)])


def layout_summary(stacks: Sequence[str] = ("",)):
    """The Custom Scalars layout: one chart per quantity, one line per block (a tag regex each)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.custom_scalar import metadata as custom_scalar

    def chart(title: str, tags: list[str]):
        return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=tags))

    run_charts = [chart("loss (train, val)", [r"^loss/(train|val)$"]), chart("grad_norm (global)", [r"^grad_norm/global$"]),
                  chart("lr", [r"^lr$"])]
    block_charts = [chart(f"{quantity} per block{' (' + stack + ')' if stack else ''}",
                          [rf"^{quantity}/{stack + '_' if stack else ''}block_\d+$"])
                    for quantity in BLOCK_QUANTITIES for stack in stacks]
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="run", chart=run_charts),
                                         layout_pb2.Category(title="per block", chart=block_charts)])
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    plugin = SummaryMetadata.PluginData(plugin_name=custom_scalar.PLUGIN_NAME)
    return Summary(value=[Summary.Value(tag=custom_scalar.CONFIG_SUMMARY_TAG, tensor=tensor,
                                        metadata=SummaryMetadata(plugin_data=plugin))])


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


# ---- writers ------------------------------------------------------------------------------------------


class EventWriter:
    """One TensorBoard event file in `log_dir` (TFRecord framing: length, CRC-32C, event, CRC-32C), written and
    flushed in the caller's thread at every `add`, so a killed run keeps its events as it keeps its CSV rows.

    Not TensorBoard's own EventFileWriter (nor torch's SummaryWriter, built on it): without TensorFlow it
    computes CRC-32C in pure Python, ~0.6 ms per step's event, on a background thread that holds the GIL
    against the training loop; the `crc32c` package's C code takes under a microsecond.
    """

    def __init__(self, log_dir: Path, suffix: str = ""):
        try:
            import crc32c
            from tensorboard.compat.proto.event_pb2 import Event
        except ImportError:
            raise ValueError(INSTALL_HINT) from None
        self._crc, self._event = crc32c.crc32c, Event
        log_dir.mkdir(parents=True, exist_ok=True)
        # TensorBoard reads a dir's event files in name order: the nanosecond clock keeps later files later.
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{time.time_ns()}{suffix}"
        self._file = open(log_dir / name, "wb")  # noqa: SIM115 - open until close()
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _masked_crc(self, data: bytes) -> bytes:
        crc = self._crc(data)
        return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + self._masked_crc(header) + data + self._masked_crc(data))
        self._file.flush()

    def add(self, summary: Any, step: int) -> None:
        self._write(self._event(summary=summary, step=int(step), wall_time=time.time()))

    def close(self) -> None:
        self._file.close()


class TensorBoardLogger:
    """A run's events as it goes, into `<run>/tb/`: scalars of every recorded step (the rows just
    written to the CSVs), a histogram of the per-parameter gradient norms on logged steps, and the
    Custom Scalars layout."""

    def __init__(self, log_dir: Path, n_blocks: int = 0):
        self.writer = EventWriter(log_dir)
        self.n_blocks = n_blocks
        self._layout_written = False

    def log(self, metrics: Row, grad_norms: Sequence[Row], layers: Sequence[Row]) -> None:
        step = int(metrics["step"])
        if not self._layout_written:
            stacks = sorted({str(row.get("stack") or "") for row in layers}) or [""]
            self.writer.add(layout_summary(stacks), step)
            self._layout_written = True
        summary = _scalar_summary(step_scalars(metrics, layers, self.n_blocks))
        norms = [value for value in (_number(row.get("grad_norm")) for row in grad_norms) if value is not None]
        if norms:
            summary.value.extend(_histogram_summary("grad_norm/params", norms).value)
        self.writer.add(summary, step)  # one event per step

    def close(self, summary: Row) -> None:
        self.writer.close()


def tensorboard_logger(run_dir: Path, config: Row) -> StepListener:
    return TensorBoardLogger(Path(run_dir) / TB_DIR, int(config.get("depth") or 0))


LOGGERS: dict[str, Callable[[Path, Row], StepListener] | None] = {
    "none": None,
    "tensorboard": tensorboard_logger,
}


def build(config: Row, run_dir: Path) -> list[StepListener]:
    """The step listeners of `config["logger"]` (none by default) for a run writing into `run_dir`."""
    name = config.get("logger") or "none"
    if name not in LOGGERS:
        raise ValueError(f"logger: bad choice {name!r}; valid choices: {', '.join(LOGGERS)}")
    factory = LOGGERS[name]
    return [] if factory is None else [factory(run_dir, config)]


def logger_available(name: str) -> bool:
    """Whether logger `name` can run here (`tensorboard` and `crc32c` are the optional extra's)."""
    import importlib.util

    return name != "tensorboard" or all(importlib.util.find_spec(module) is not None
                                        for module in ("tensorboard", "crc32c"))


# ---- after the fact -----------------------------------------------------------------------------------


def write_hparams(run_dir: Path, hparams: Mapping[str, Any], summary: Row) -> Path:
    """The run's HParams session into `<run>/tb/` (replacing an earlier one): `hparams` as its
    hyperparameters, the summary's final losses, val acc and init grad ratio as `hparams/<name>` metrics."""
    log_dir = Path(run_dir) / TB_DIR
    for old in log_dir.glob(f"*{HPARAMS_SUFFIX}"):
        old.unlink()
    writer = EventWriter(log_dir, HPARAMS_SUFFIX)
    metrics = {name: _number(summary.get(name)) for name in HPARAM_METRICS}
    metrics = {name: value for name, value in metrics.items() if value is not None}
    step = int(_number(summary.get("steps_done")) or 0)
    for record in hparams_summaries(hparams, list(metrics), str(summary.get("status"))):
        writer.add(record, step)
    writer.add(_scalar_summary({f"hparams/{name}": value for name, value in metrics.items()}), step)
    writer.close()
    return log_dir


def write_run_events(run_dir: Path, metrics: Sequence[Row], grad_norms: Sequence[Row], layers: Sequence[Row],
                     n_blocks: int) -> Path:
    """`<run>/tb/` rebuilt from a run's CSV rows, as the live logger would have written it. Written into a
    new folder, then swapped in: a fault leaves the old events whole."""
    run_dir = Path(run_dir)
    target, fresh = run_dir / TB_DIR, run_dir / f".{TB_DIR}.new"
    shutil.rmtree(fresh, ignore_errors=True)
    logger = TensorBoardLogger(fresh, n_blocks)
    by_step: dict[int, tuple[list[Row], list[Row]]] = {}
    for row in grad_norms:
        by_step.setdefault(int(row["step"]), ([], []))[0].append(row)
    for row in layers:
        by_step.setdefault(int(row["step"]), ([], []))[1].append(row)
    for row in metrics:
        step_grads, step_layers = by_step.get(int(row["step"]), ([], []))
        logger.log(row, step_grads, step_layers)
    logger.close({})
    old = run_dir / f".{TB_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _summary(run: Row) -> Row:
    """The run's summary.json (it holds init_grad_ratio, which the runs frame does not), else its row."""
    from resbench.records import read_json

    return read_json(Path(run["path"]) / SUMMARY_JSON) or run


def _records(frame: Any) -> list[dict[str, Any]]:
    return frame.to_dict("records") if len(frame) else []


def export(dirs: Sequence[Path]) -> list[Path]:
    """`resbench report DIR --tensorboard`: every run's `tb/` rebuilt from its CSVs, with an HParams session
    whose hyperparameters are the report's grouping keys (a sweep's swept keys). Returns the `tb/` dirs."""
    from resbench.api import load

    results = load(*dirs)
    by_run = {name: {run: frame for run, frame in getattr(results, name).groupby("run")}
              for name in ("metrics", "grad_norms", "layers")}
    written = []
    for run in _records(results.runs):
        frames = {name: _records(by_run[name][run["run"]]) if run["run"] in by_run[name] else []
                  for name in by_run}
        n_blocks = 1 + max((int(row["layer"]) for row in frames["layers"]), default=-1)
        target = write_run_events(Path(run["path"]), frames["metrics"], frames["grad_norms"], frames["layers"],
                                  n_blocks)
        write_hparams(Path(run["path"]), {key: run[key] for key in results.keys}, _summary(run))
        written.append(target)
    return written


def write_sweep_hparams(sweep_dir: Path) -> list[Path]:
    """At the end of a sweep: an HParams session (swept keys, final metrics) for each run that logged to
    TensorBoard, so the HParams dashboard of `tensorboard --logdir SWEEP_DIR` compares the grid."""
    from resbench.api import load

    results = load(sweep_dir)
    written = []
    for run in _records(results.runs):
        if run.get("logger") == "tensorboard" and (Path(run["path"]) / TB_DIR).is_dir():
            written.append(write_hparams(Path(run["path"]), {key: run[key] for key in results.keys}, _summary(run)))
    return written
