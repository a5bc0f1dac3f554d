"""Where a run's numbers go besides its CSVs, as it runs: the `logger` config key's table, and the
TensorBoard event writer.

A logger is a step listener: the trainer (or `resbench.watch`) hands it the rows it has just appended to
metrics.csv, grad_norms.csv and layers.csv (as dicts by column name) on the steps it flushes (logged,
evaluated, diverging: metrics.csv's rows of the other steps are the file's alone) and closes it with the summary.
`resbench report DIR --tensorboard` rebuilds the same events later from those CSVs through this same
writer (resbench/report/tensorboard.py), so a run logged live and one converted later hold the same events.

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
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from .registries import INSTALL_HINT
from .schema import BLOCK_PROBES, TB_DIR

RUN_SCALARS = {  # metrics.csv column → tag
    "loss": "loss/train",
    "val_loss": "loss/val",
    "val_acc": "val_acc",
    "lr": "lr",
    "grad_norm": "grad_norm/global",
}

Row = Mapping[str, Any]


class StepListener(Protocol):
    """What the trainer calls besides its recorder: after each recorded step, and once at the end."""

    def log(self, metrics: Row, grad_norms: Sequence[Row], layers: Sequence[Row]) -> None: ...

    def close(self, summary: Row) -> None: ...


def finite_number(value: Any) -> float | None:
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
    scalars = {tag: finite_number(metrics.get(column)) for column, tag in RUN_SCALARS.items()}
    for row in layers:
        for quantity in BLOCK_PROBES:
            tag = block_tag(quantity, int(row["layer"]), row.get("stack") or None, n_blocks)
            scalars[tag] = finite_number(row.get(quantity))
    return {tag: value for tag, value in scalars.items() if value is not None}


# ---- protobufs ----------------------------------------------------------------------------------------


def scalar_summary(scalars: Mapping[str, float]):
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
                    for quantity in BLOCK_PROBES for stack in stacks]
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="run", chart=run_charts),
                                         layout_pb2.Category(title="per block", chart=block_charts)])
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    plugin = SummaryMetadata.PluginData(plugin_name=custom_scalar.PLUGIN_NAME)
    return Summary(value=[Summary.Value(tag=custom_scalar.CONFIG_SUMMARY_TAG, tensor=tensor,
                                        metadata=SummaryMetadata(plugin_data=plugin))])


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

    def __init__(self, log_dir: Path):
        self.writer = EventWriter(log_dir)
        # The tags' digits: the most blocks a stack has, read off the first step with block rows (every logged
        # step has a row per block), so a live run and its CSVs converted later name the blocks alike.
        self.n_blocks = 0
        self._layout_written = False

    def log(self, metrics: Row, grad_norms: Sequence[Row], layers: Sequence[Row]) -> None:
        step = int(metrics["step"])
        if not self.n_blocks and layers:
            self.n_blocks = 1 + max(int(row["layer"]) for row in layers)
        if not self._layout_written:
            stacks = sorted({str(row.get("stack") or "") for row in layers}) or [""]
            self.writer.add(layout_summary(stacks), step)
            self._layout_written = True
        summary = scalar_summary(step_scalars(metrics, layers, self.n_blocks))
        norms = [value for value in (finite_number(row.get("grad_norm")) for row in grad_norms) if value is not None]
        if norms:
            summary.value.extend(_histogram_summary("grad_norm/params", norms).value)
        self.writer.add(summary, step)  # one event per step

    def close(self, summary: Row) -> None:
        self.writer.close()


def tensorboard_logger(run_dir: Path, config: Row) -> StepListener:
    return TensorBoardLogger(Path(run_dir) / TB_DIR)


# Keyed by registries.LOGGERS.
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
