"""Run records: the only code that writes a run's files.

Every CSV is appended and flushed once per logged step, so a killed run leaves valid rows;
summary.json is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

METRIC_COLUMNS = ["step", "loss", "val_loss", "lr", "grad_norm", "elapsed_s"]
GRAD_NORM_COLUMNS = ["step", "layer", "param", "grad_norm"]
LAYER_COLUMNS = ["step", "layer", "grad_norm", "hidden_rms", "act_grad_norm", "update_ratio", "rank_residual"]


def _cell(value: Any) -> Any:
    """CSV cell: None and NaN are empty; floats keep full precision."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


class CsvWriter:
    """An append-only CSV file with a fixed header."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.columns = list(columns)
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        self._writer.writerows([_cell(v) for v in row] for row in rows)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename: the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def config_hash(config: dict[str, Any]) -> str:
    """Identity of a run: a hash of its resolved config (which holds no output paths)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunRecorder:
    """Opens a run's files, appends rows as the run goes and closes them with a summary."""

    def __init__(self, run_dir: Path, config: dict[str, Any], metric_columns: Sequence[str],
                 layer_columns: Sequence[str]):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        self.metrics = CsvWriter(self.run_dir / "metrics.csv", metric_columns)
        self.grad_norms = CsvWriter(self.run_dir / "grad_norms.csv", GRAD_NORM_COLUMNS)
        self.layers = CsvWriter(self.run_dir / "layers.csv", layer_columns)
        self._files = (self.metrics, self.grad_norms, self.layers)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.run_dir / "summary.json", summary)

    def log(self, metrics_row: Sequence[Any] | None, grad_rows: Sequence[Sequence[Any]] = (),
            layer_rows: Sequence[Sequence[Any]] = ()) -> None:
        """Append one step's rows to every file and flush them."""
        if metrics_row is not None:
            self.metrics.write_rows([metrics_row])
        self.grad_norms.write_rows(grad_rows)
        self.layers.write_rows(layer_rows)
        for f in self._files:
            f.flush()

    def close(self, summary: dict[str, Any]) -> None:
        for f in self._files:
            f.close()
        self.write_summary(summary)
