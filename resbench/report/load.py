"""Run and sweep directories → tidy pandas frames.

A broken run never stops a report: whatever is readable is used, and what is not becomes an issue
named in the warnings. CSVs of many runs are parsed in one `read_csv` call per file kind (the bodies
are concatenated and each row's run is recovered from the per-file line counts), which keeps 500
runs to about a second.
"""

from __future__ import annotations

import io
import json
import os
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from resbench import records
from resbench.report import ReportInputError
from resbench.schema import (
    ACCURACY_COLUMN,
    CONFIG_YAML,
    DRAW,
    GRAD_NORM_COLUMNS,
    GRAD_NORMS_CSV,
    HYDRA_CONFIG_YAML,
    HYDRA_DIR,
    INIT_GRAD_NORM_COLUMNS,
    INIT_GRAD_NORMS_CSV,
    INIT_LAYER_COLUMNS,
    INIT_LAYERS_CSV,
    LAYER_COLUMNS,
    LAYERS_CSV,
    METRIC_COLUMNS,
    METRICS_CSV,
    PROVENANCE_FIELDS,
    PROVENANCE_JSON,
    REPORT_DIR,
    REPORTED_NUMERIC,
    REPORTED_SUMMARY_FIELDS,
    RUN_KEY_COLUMNS,
    RUN_RESULT_COLUMNS,
    RUNS_CSV,
    STACK,
    SUMMARY_JSON,
    SWEEP_JSON,
    Status,
)

MAX_SEARCH_DEPTH = 3  # sweep/<subdir>/... : Hydra's sweep.subdir may hold a slash or two

# Columns the contract fixes; all numeric. Others (future probes) are inferred.
# The numeric columns (`stack` is text: encoder / decoder, empty and absent in older runs for single-stack models).
METRICS_COLUMNS = (*METRIC_COLUMNS, ACCURACY_COLUMN)
LAYERS_COLUMNS = tuple(column for column in LAYER_COLUMNS if column != STACK)
GRAD_NORMS_NUMERIC = tuple(column for column in GRAD_NORM_COLUMNS if column not in (STACK, "param"))
INIT_LAYERS_NUMERIC = tuple(column for column in INIT_LAYER_COLUMNS if column != STACK)
INIT_GRAD_NORMS_NUMERIC = tuple(column for column in INIT_GRAD_NORM_COLUMNS if column not in (STACK, "param"))
# The init draws' frames, each run's rows by draw: the files' columns after `run`.
INIT_DRAW_LAYERS = ("run", *INIT_LAYER_COLUMNS)
INIT_DRAW_PARAMS = ("run", *INIT_GRAD_NORM_COLUMNS)
# Summary fields are floats in the frame even when JSON holds null.
SUMMARY_NUMERIC = REPORTED_NUMERIC
SUMMARY_FIELDS = {name: np.nan if name in SUMMARY_NUMERIC else None for name in REPORTED_SUMMARY_FIELDS}
NO_SUMMARY = Status.RUNNING.value  # a run still going has not written summary.json yet
BAD_SUMMARY = Status.UNKNOWN.value


@dataclass
class RunSet:
    """Every run found under some dirs, as frames keyed by the integer column `run`."""

    runs: pd.DataFrame  # one row per run: run, name, path, source, summary fields, provenance, config leaves
    metrics: pd.DataFrame  # run, step, loss, val_loss, lr, grad_norm, elapsed_s[, val_acc]
    layers: pd.DataFrame  # run, step, layer, grad_norm[, hidden_rms, act_grad_norm, update_ratio, ...]
    config_keys: list[str]  # dotted scalar leaves of config.yaml (`depth`, `train.warmup`, `model.name`)
    swept_keys: list[str] | None  # from sweep.json / runs.csv; None when no dir said
    issues: dict[int, list[str]] = field(default_factory=dict)  # run → what was unreadable
    notes: list[str] = field(default_factory=list)  # sweep-level remarks (runs.csv lagging, …)
    # Step 0 of every init draw (init_layers.csv, init_grad_norms.csv); a run without them has its own step-0
    # rows as draw 0. Layers: INIT_DRAW_LAYERS; parameters: INIT_DRAW_PARAMS, `layer` NaN outside the blocks.
    init_draw_layers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INIT_DRAW_LAYERS))
    init_draw_params: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INIT_DRAW_PARAMS))

    @cached_property
    def at(self) -> dict[str, pd.DataFrame]:
        """layers rows at "init" (step 0) and at the "end" (each run's last logged step): the profiles."""
        if "layer" not in self.layers:
            return {"init": self.layers, "end": self.layers}
        step = self.layers["step"].to_numpy()
        last_step = self.layers.groupby("run", sort=False)["step"].transform("max").to_numpy()
        return {"init": self.layers[step == 0], "end": self.layers[step == last_step]}


# ---------------------------------------------------------------------------------------------
# discovery


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_YAML).is_file() or (path / HYDRA_DIR).is_dir()


def discover_runs(root: Path) -> list[Path]:
    """Run dirs under `root` (or `root` itself): dirs holding config.yaml or .hydra/, never runs.csv."""
    if is_run_dir(root):
        return [root]
    found: list[Path] = []

    def walk(directory: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name == REPORT_DIR or not entry.is_dir():
                continue
            path = Path(entry.path)
            if is_run_dir(path):
                found.append(path)
            elif depth < MAX_SEARCH_DEPTH:
                walk(path, depth + 1)

    walk(root, 1)
    return found


def check_dirs(dirs: list[Path]) -> list[list[Path]]:
    """Run dirs of each input dir; ReportInputError for a missing dir or one without runs."""
    if not dirs:
        raise ReportInputError("no directory to report on")
    found = []
    for directory in dirs:
        if not directory.exists():
            raise ReportInputError(f"no such directory: {directory}")
        if not directory.is_dir():
            raise ReportInputError(f"not a directory: {directory}")
        runs = discover_runs(directory)
        if not runs:
            raise ReportInputError(f"no runs in {directory} (no subdirectory holds config.yaml or .hydra/)")
        found.append(runs)
    return found


# ---------------------------------------------------------------------------------------------
# per-run small files


def flatten(mapping: dict, prefix: str = "") -> dict[str, object]:
    """Scalar leaves of a nested mapping under dotted keys; lists are not grouping material, so skipped."""
    leaves: dict[str, object] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(flatten(value, name + "."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            leaves[name] = value
    return leaves


def normalise_config(leaves: dict[str, object]) -> dict[str, object]:
    """`residual` arrives as YAML bool or the string "rezero": make it one of "true"/"false"/"rezero".
    A run of older resbench also holds each shared model key as a copy under `model.` (`model.depth`
    beside `depth`): the copies are dropped, so that its columns are those of a run of today."""
    leaves = {key: value for key, value in leaves.items()
              if not (key.startswith("model.") and key.removeprefix("model.") in leaves)}
    residual = leaves.get("residual")
    if isinstance(residual, bool):
        leaves["residual"] = "true" if residual else "false"
    elif residual is not None:
        leaves["residual"] = str(residual).lower()
    return leaves


def _load_yaml(path: Path) -> object:
    """A YAML file's content; ValueError (UnicodeDecodeError) for one that is not UTF-8 text."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_config(run_dir: Path, issues: list[str]) -> dict[str, object]:
    """config.yaml; else Hydra's own .hydra/config.yaml; else the override strings."""
    for relative in (CONFIG_YAML, HYDRA_CONFIG_YAML):
        path = run_dir / relative
        if not path.is_file():
            continue
        try:
            data = _load_yaml(path)
        except (OSError, ValueError, yaml.YAMLError):
            issues.append(f"{relative} unparsable")
            continue
        if isinstance(data, dict):
            if relative != CONFIG_YAML:
                issues.append("config.yaml missing (used .hydra/config.yaml)")
            return normalise_config(flatten(data))
        issues.append(f"{relative} is not a mapping")
    leaves = read_overrides(run_dir)
    issues.append("config.yaml missing" + (" (used .hydra/overrides.yaml)" if leaves else ""))
    return normalise_config(leaves)


def read_overrides(run_dir: Path) -> dict[str, object]:
    """The run's overrides (records.read_overrides) with each value read as a YAML scalar (`6` → 6)."""
    leaves: dict[str, object] = {}
    for key, value in records.read_overrides(run_dir).items():
        try:
            leaves[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            leaves[key] = value
    return leaves


def read_summary(run_dir: Path, issues: list[str]) -> dict[str, object]:
    summary = dict(SUMMARY_FIELDS)
    path = run_dir / SUMMARY_JSON
    if not path.is_file():
        summary["status"] = NO_SUMMARY
        return summary
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        issues.append(f"{SUMMARY_JSON} unparsable")
        summary["status"] = BAD_SUMMARY
        return summary
    summary.update({key: data[key] for key in SUMMARY_FIELDS if key in data})
    summary["status"] = str(summary["status"] or BAD_SUMMARY)
    for key in SUMMARY_NUMERIC:
        try:
            summary[key] = float(summary[key]) if summary[key] is not None else np.nan
        except (TypeError, ValueError):
            summary[key] = np.nan
    return summary


def read_provenance(run_dir: Path) -> dict[str, object]:
    """provenance.json's fields (None where missing: older runs, or a field unknown then); `command` as one
    shell-quoted string."""
    data = records.read_json(run_dir / PROVENANCE_JSON)
    data = data if isinstance(data, dict) else {}
    facts = {name: data.get(name) for name in PROVENANCE_FIELDS}
    if isinstance(facts["command"], list):
        facts["command"] = shlex.join(str(part) for part in facts["command"])
    return facts


# ---------------------------------------------------------------------------------------------
# CSVs, many runs per parse


@dataclass
class _CsvPart:
    run: int
    name: str  # file name, for issues
    header: bytes
    body: bytes  # complete lines only, each ending in \n
    n_rows: int


def _split_csv(run: int, path: Path, issues: list[str], *, quiet_truncation: bool) -> _CsvPart | None:
    """A CSV's header and complete rows; a last line without its newline was cut mid-write: dropped."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        if not quiet_truncation:
            issues.append(f"{path.name}: incomplete last line dropped")
    header_end = data.find(b"\n")
    if header_end < 0:
        issues.append(f"{path.name} empty")
        return None
    header, body = data[:header_end].rstrip(b"\r"), data[header_end + 1 :]
    if b"\n\n" in body or body.startswith(b"\n"):  # read_csv skips blank lines: keep counts honest
        body = b"".join(line + b"\n" for line in body.split(b"\n") if line.strip())
    return _CsvPart(run, path.name, header, body, body.count(b"\n"))


def _dtypes(header: bytes, numeric: tuple[str, ...]) -> dict[str, str]:
    names = header.decode(errors="replace").split(",")
    return {name: "float64" for name in names if name in numeric}


def _parse_one(part: _CsvPart, numeric: tuple[str, ...], issues: list[str]) -> pd.DataFrame | None:
    """One file, leniently: skip malformed lines, coerce junk numbers to NaN, note it."""
    try:
        frame = pd.read_csv(io.BytesIO(part.header + b"\n" + part.body), on_bad_lines="skip", dtype=str)
    except (ValueError, pd.errors.ParserError):
        issues.append(f"{part.name} unparsable")
        return None
    skipped = part.n_rows - len(frame)
    junk = pd.Series(False, index=frame.index)  # rows with text where a number belongs
    for column in frame.columns.intersection(list(numeric)):
        values = pd.to_numeric(frame[column], errors="coerce")
        junk |= values.isna() & frame[column].notna()
        frame[column] = values
    if skipped + junk.sum():
        issues.append(f"{part.name}: {skipped + int(junk.sum())} malformed rows skipped")
    return frame.loc[~junk].assign(run=part.run)


def _parse_parts(parts: list[_CsvPart], numeric: tuple[str, ...], issues: dict[int, list[str]],
                 key: str = "step") -> pd.DataFrame:
    """All parts of one file kind → one frame with a `run` column and whole numbers in `key` (the row's step, or
    its init draw); a bad file falls back to its own parse."""
    by_header: dict[bytes, list[_CsvPart]] = defaultdict(list)
    for part in parts:
        by_header[part.header].append(part)
    frames = []
    for header, group in by_header.items():
        blob = header + b"\n" + b"".join(part.body for part in group)
        counts = [part.n_rows for part in group]
        try:
            frame = pd.read_csv(io.BytesIO(blob), dtype=_dtypes(header, numeric), low_memory=False)  # one chunk
            if len(frame) != sum(counts):
                raise ValueError("row count mismatch")
        except (ValueError, pd.errors.ParserError):
            frames.extend(f for part in group if (f := _parse_one(part, numeric, issues[part.run])) is not None)
            continue
        frame["run"] = np.repeat(np.array([part.run for part in group], dtype=np.int32), counts)
        frames.append(frame)
    frames = [frame for frame in frames if len(frame) and key in frame]
    if not frames:
        return pd.DataFrame({"run": pd.Series(dtype=np.int32), key: pd.Series(dtype=np.int64)})
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame.dropna(subset=[key])
    frame = _without_impossible(frame, parts[0].name, frame[key], 0, STEP_MAX, issues)
    return frame.assign(**{key: frame[key].astype(np.int64)}, run=frame["run"].astype(np.int32))


def with_stack(frame: pd.DataFrame) -> pd.DataFrame:
    """`stack` as text, "" where a row has none (single-stack models, runs from before the column)."""
    if STACK not in frame or frame[STACK].isna().all():  # read as floats (all NaN) when every cell is empty
        return frame.assign(**{STACK: pd.Series("", index=frame.index, dtype=object)})
    return frame.assign(**{STACK: np.where(frame[STACK].isna(), "", frame[STACK].astype(str)).astype(object)})


STEP_MAX = 2**40  # far beyond any run; a larger step is damage (and would overflow the heatmap's grid)


def _without_impossible(frame: pd.DataFrame, name: str, values: pd.Series, low: float | pd.Series,
                        high: float | pd.Series, issues: dict[int, list[str]]) -> pd.DataFrame:
    """`frame` without the rows whose `values` are not whole numbers in [low, high] (a step or a layer id
    no run can write: damage); each run that had some gets a note naming the file."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = ~(np.isfinite(numbers) & (numbers >= low) & (numbers <= high) & (numbers == np.floor(numbers)))
    if not bad.any():
        return frame
    for run, count in frame.loc[bad, "run"].value_counts().sort_index().items():
        issues[int(run)].append(f"{name}: {count} rows with an impossible {values.name} skipped")
    return frame.loc[~bad]


def _checked_layers(runs: pd.DataFrame, layers: pd.DataFrame, issues: dict[int, list[str]]) -> pd.DataFrame:
    """layers.csv with its stack column, block norms filled in from grad_norms where missing, and rows whose
    block id is at or past its stack's depth (damage) left out."""
    return _within_depth(runs, with_stack(_fill_block_norms(runs, with_stack(layers), issues)), LAYERS_CSV, issues)


def _within_depth(runs: pd.DataFrame, layers: pd.DataFrame, name: str, issues: dict[int, list[str]]) -> pd.DataFrame:
    """`layers` (rows of file `name`) without the rows whose block id is at or past its stack's depth (damage)."""
    if "layer" not in layers or "depth" not in runs:
        return layers
    depth = layers["run"].map(_stack_depth_limit(runs)).fillna(np.inf)
    return _without_impossible(layers, name, layers["layer"], 0, depth - 1, issues)


def _stack_depth_limit(runs: pd.DataFrame) -> pd.Series:
    """Per run, the most blocks any of its stacks has: `depth`, or an encoder–decoder's decoder_depth."""
    limit = pd.to_numeric(runs.set_index("run")["depth"], errors="coerce")
    if "model.decoder_depth" in runs:
        decoder = pd.to_numeric(runs.set_index("run")["model.decoder_depth"], errors="coerce")
        limit = np.fmax(limit, decoder)
    return limit


def _block_norms_from_params(grad_norms: pd.DataFrame) -> pd.DataFrame:
    """Per-block gradient norm from per-tensor norms: √Σ‖g_p‖² over the block's tensors."""
    blocks = with_stack(grad_norms.dropna(subset=["layer", "grad_norm"]))
    squared = blocks.assign(grad_norm=blocks["grad_norm"] ** 2)
    summed = squared.groupby(["run", "step", STACK, "layer"], as_index=False)["grad_norm"].sum()
    return summed.assign(grad_norm=np.sqrt(summed["grad_norm"]), layer=summed["layer"].astype(np.int64))


# ---------------------------------------------------------------------------------------------
# sweep metadata


def read_grad_norms(run_dir: Path) -> pd.DataFrame:
    """grad_norms.csv of one run (one row per parameter tensor: not part of a RunSet); a row cut off by a
    killed writer is dropped; `layer` is empty outside blocks."""
    path = run_dir / GRAD_NORMS_CSV
    try:
        frame = pd.read_csv(path, on_bad_lines="skip", dtype={"param": str})
    except (OSError, pd.errors.EmptyDataError):
        return pd.DataFrame(columns=GRAD_NORM_COLUMNS)
    for column in ("step", "grad_norm"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["layer"] = pd.to_numeric(frame["layer"], errors="coerce").astype("Int64")
    return frame.dropna(subset=["step", "grad_norm"]).astype({"step": "int64"})


def read_swept_keys(sweep_dir: Path) -> list[str] | None:
    """Swept keys from sweep.json, else the per-key columns of runs.csv's header; None if neither says."""
    try:
        data = json.loads((sweep_dir / SWEEP_JSON).read_text())
        keys = data.get("swept_keys") if isinstance(data, dict) else None
        if isinstance(keys, list):
            return [str(key) for key in keys]
    except (OSError, ValueError):
        pass
    try:
        with open(sweep_dir / RUNS_CSV) as handle:
            header = handle.readline().strip().split(",")
    except OSError:
        return None
    fixed = {*RUN_KEY_COLUMNS, *RUN_RESULT_COLUMNS}
    return [name for name in header if name and name not in fixed] if "run" in header else None


def runs_csv_lag(sweep_dir: Path, run_names: set[str]) -> str | None:
    """A note when runs.csv names runs that have no run dir (runs.csv is written as runs end)."""
    try:
        listed = pd.read_csv(sweep_dir / RUNS_CSV, usecols=["run"], dtype=str)["run"].dropna()
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    missing = sorted(set(listed) - run_names)
    if not missing:
        return None
    return f"{sweep_dir}/{RUNS_CSV} lists {len(missing)} run(s) with no run dir: {name_list(missing)}"


def name_list(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … and {len(names) - limit} more" if len(names) > limit else "")


# ---------------------------------------------------------------------------------------------
# everything


def load(dirs: list[Path], found: list[list[Path]] | None = None) -> RunSet:
    """Read every run under `dirs` (pooled; `found` = `check_dirs(dirs)` when already computed)."""
    found = found if found is not None else check_dirs(dirs)
    records: list[dict[str, object]] = []
    issues: dict[int, list[str]] = defaultdict(list)
    parts: dict[str, list[_CsvPart]] = defaultdict(list)
    config_keys: dict[str, None] = {}
    swept: dict[str, None] = {}
    any_swept = False
    notes = []
    for source, run_dirs in zip(dirs, found):
        keys = read_swept_keys(source) if run_dirs != [source] else None
        if keys is not None:
            any_swept = True
            swept.update(dict.fromkeys(keys))
        names = set()
        for run_dir in run_dirs:
            run = len(records)
            name = run_dir.name if run_dir == source else run_dir.relative_to(source).as_posix()
            names.add(name)
            config = read_config(run_dir, issues[run])
            config_keys.update(dict.fromkeys(config))
            summary = read_summary(run_dir, issues[run])
            record = {"run": run, "name": name, "path": str(run_dir), "source": str(source)}
            record.update(summary)
            record.update(read_provenance(run_dir))
            record.update({key: value for key, value in config.items() if key not in record})
            records.append(record)
            _split_run_csvs(run, run_dir, summary["status"], parts, issues[run])
        if run_dirs != [source]:
            note = runs_csv_lag(source, names)
            if note:
                notes.append(note)

    runs = pd.DataFrame.from_records(records)
    for key in SUMMARY_NUMERIC:
        runs[key] = pd.to_numeric(runs[key], errors="coerce")
    metrics = _parse_parts(parts[METRICS_CSV], METRICS_COLUMNS, issues)
    layers = _parse_parts(parts[LAYERS_CSV], LAYERS_COLUMNS, issues)
    if "layer" in layers:
        layers = layers.dropna(subset=["layer"])
        layers = layers.assign(layer=layers["layer"].astype(np.int64))
    layers = _checked_layers(runs, layers, issues)
    draw_layers = init_draw_layers(runs, parts[INIT_LAYERS_CSV], layers, issues)
    draw_params = init_draw_params(runs, parts[INIT_GRAD_NORMS_CSV], issues)
    runs = _fill_final_losses(runs, metrics)
    keys = [key for key in config_keys if key in runs.columns and key not in SUMMARY_FIELDS]
    return RunSet(
        runs=runs,
        metrics=metrics,
        layers=layers,
        config_keys=keys,
        swept_keys=list(swept) if any_swept else None,
        issues={run: found_issues for run, found_issues in issues.items() if found_issues},
        notes=notes,
        init_draw_layers=draw_layers,
        init_draw_params=draw_params,
    )


def _split_run_csvs(run: int, run_dir: Path, status: str, parts: dict[str, list[_CsvPart]],
                    issues: list[str]) -> None:
    """A run's CSVs, split for the pooled parse. The init draws' files are new: older runs (and
    resbench.watch runs) have none, which is no issue."""
    running = status == Status.RUNNING  # its last line may be mid-write: no note
    for kind in (METRICS_CSV, LAYERS_CSV, INIT_LAYERS_CSV, INIT_GRAD_NORMS_CSV):
        part = _split_csv(run, run_dir / kind, issues, quiet_truncation=running)
        if part is not None:
            parts[kind].append(part)
        elif status == Status.COMPLETED and kind in (METRICS_CSV, LAYERS_CSV):
            issues.append(f"{kind} missing")


# ---------------------------------------------------------------------------------------------
# init draws


def init_draw_layers(runs: pd.DataFrame, parts: list[_CsvPart], layers: pd.DataFrame,
                     issues: dict[int, list[str]]) -> pd.DataFrame:
    """init_layers.csv of every run (INIT_DRAW_LAYERS); a run without usable rows has its step-0 rows of
    layers.csv as draw 0."""
    draws = with_stack(_parse_parts(parts, INIT_LAYERS_NUMERIC, issues, key=DRAW))
    draws = _within_depth(runs, draws.dropna(subset=["layer"]) if "layer" in draws else draws.iloc[:0],
                          INIT_LAYERS_CSV, issues)
    _note_stand_ins(runs, parts, set(draws["run"]), LAYERS_CSV, issues)
    step_zero = layers.loc[layers["step"].eq(0) & ~layers["run"].isin(draws["run"])] if "layer" in layers else None
    if step_zero is not None and len(step_zero):
        draws = pd.concat([draws, step_zero.drop(columns="step").assign(**{DRAW: 0})], ignore_index=True)
    return _draw_frame(draws, INIT_DRAW_LAYERS).astype({"layer": np.int64})


def init_draw_params(runs: pd.DataFrame, parts: list[_CsvPart], issues: dict[int, list[str]]) -> pd.DataFrame:
    """init_grad_norms.csv of every run (INIT_DRAW_PARAMS); a run without usable rows has its step-0 rows of
    grad_norms.csv as draw 0."""
    draws = _parse_parts(parts, INIT_GRAD_NORMS_NUMERIC, issues, key=DRAW)
    if not {"layer", "param", "grad_norm"} <= set(draws.columns):
        draws = draws.iloc[:0]
    _note_stand_ins(runs, parts, set(draws["run"]), GRAD_NORMS_CSV, issues)
    have = set(draws["run"])
    stand_ins = [part for run, path in zip(runs["run"], runs["path"]) if run not in have
                 and (part := _step_zero_part(run, Path(path) / GRAD_NORMS_CSV)) is not None]
    step_zero = _parse_parts(stand_ins, GRAD_NORMS_NUMERIC, issues)
    if {"layer", "param", "grad_norm"} <= set(step_zero.columns):
        draws = pd.concat([draws, step_zero.rename(columns={"step": DRAW})], ignore_index=True)
    return _draw_frame(with_stack(draws), INIT_DRAW_PARAMS)


def _draw_frame(rows: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """`rows` with exactly `columns` (NaN where a run's file had none), by run and draw in file order."""
    frame = rows.reindex(columns=list(columns)).sort_values(["run", DRAW], kind="stable", ignore_index=True)
    numeric = [column for column in columns if column not in (STACK, "param")]
    return frame.astype({column: np.float64 for column in numeric} | {"run": np.int32, DRAW: np.int64})


def _note_stand_ins(runs: pd.DataFrame, parts: list[_CsvPart], read: set[int], stand_in: str,
                    issues: dict[int, list[str]]) -> None:
    """An issue for each run whose init draws' file is there but gave no rows (damaged, or cut short while
    step 0 was measured): its own step 0 stands in."""
    status = dict(zip(runs["run"], runs["status"]))
    for part in parts:
        if part.run not in read and status.get(part.run) != Status.RUNNING:
            issues[part.run].append(f"{part.name} gave no rows: draw 0 is {stand_in}'s step 0")


def _step_zero_part(run: int, path: Path) -> _CsvPart | None:
    """grad_norms.csv's header and its step-0 rows (the file is written step by step: they come first)."""
    lines = []
    try:
        with open(path, "rb") as handle:
            header = handle.readline().rstrip(b"\r\n")
            for line in handle:
                if not line.startswith(b"0,") or not line.endswith(b"\n"):
                    break
                lines.append(line)
    except OSError:
        return None
    return _CsvPart(run, path.name, header, b"".join(lines), len(lines)) if lines else None


def _fill_block_norms(runs: pd.DataFrame, layers: pd.DataFrame, issues: dict[int, list[str]]) -> pd.DataFrame:
    """Runs without layers.csv grad norms get them from grad_norms.csv (rare: read only for those)."""
    have = set(layers.loc[layers["grad_norm"].notna(), "run"].unique()) if "grad_norm" in layers else set()
    parts = []
    for run, path in zip(runs["run"], runs["path"]):
        if run not in have and (Path(path) / GRAD_NORMS_CSV).is_file():
            part = _split_csv(run, Path(path) / GRAD_NORMS_CSV, issues[run], quiet_truncation=True)
            if part is not None:
                parts.append(part)
    if not parts:
        return layers
    grad_norms = _parse_parts(parts, GRAD_NORMS_NUMERIC, issues)
    if not {"layer", "grad_norm"} <= set(grad_norms.columns):
        return layers
    from_params = _block_norms_from_params(grad_norms)
    if "grad_norm" not in layers:
        layers = layers.assign(grad_norm=np.nan)
    filled = layers["run"].isin(from_params["run"].unique())
    probes = layers.loc[filled].drop(columns="grad_norm")
    if len(probes) and "layer" in probes:  # keep a run's probe columns, take grad norms from the params
        from_params = from_params.merge(probes, on=["run", "step", STACK, "layer"], how="left")
    return pd.concat([layers.loc[~filled], from_params], ignore_index=True)


def _fill_final_losses(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """A run without summary values (still running, killed, broken summary) shows its latest logged ones."""
    for column, source in (("final_loss", "loss"), ("final_val_loss", "val_loss"), ("final_val_acc", ACCURACY_COLUMN)):
        if source not in metrics:
            continue
        latest = metrics.dropna(subset=[source]).sort_values(["run", "step"]).groupby("run")[source].last()
        gaps = runs[column].isna() & ~runs["status"].isin([Status.COMPLETED.value, Status.DIVERGED.value,
                                                           Status.FAILED.value])
        runs.loc[gaps, column] = runs.loc[gaps, "run"].map(latest)
    return runs


def concat(run_sets: dict[str, RunSet]) -> RunSet:
    """Run sets side by side ({"A": …, "B": …}) as one, runs renumbered and tagged in `runs.side`."""
    runs, metrics, layers, draw_layers, draw_params, issues, notes = [], [], [], [], [], {}, []
    offset = 0
    for side, run_set in run_sets.items():
        runs.append(run_set.runs.assign(run=run_set.runs["run"] + offset, side=side))
        metrics.append(run_set.metrics.assign(run=run_set.metrics["run"] + offset))
        layers.append(run_set.layers.assign(run=run_set.layers["run"] + offset))
        draw_layers.append(run_set.init_draw_layers.assign(run=run_set.init_draw_layers["run"] + offset))
        draw_params.append(run_set.init_draw_params.assign(run=run_set.init_draw_params["run"] + offset))
        issues.update({run + offset: found for run, found in run_set.issues.items()})
        notes += run_set.notes
        offset += len(run_set.runs)
    config_keys = list(dict.fromkeys(key for run_set in run_sets.values() for key in run_set.config_keys))
    swept = [run_set.swept_keys for run_set in run_sets.values() if run_set.swept_keys is not None]
    return RunSet(
        runs=pd.concat(runs, ignore_index=True),
        metrics=pd.concat(metrics, ignore_index=True),
        layers=pd.concat(layers, ignore_index=True),
        config_keys=config_keys,
        swept_keys=list(dict.fromkeys(key for keys in swept for key in keys)) if swept else None,
        issues=issues,
        notes=notes,
        init_draw_layers=pd.concat(draw_layers, ignore_index=True),
        init_draw_params=pd.concat(draw_params, ignore_index=True),
    )
