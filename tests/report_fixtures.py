"""Synthetic run and sweep directories, in the file formats of DESIGN.md, for the report's tests.

The numbers follow the published patterns by default (post-LN gradients rise toward the last block,
pre-LN residual streams grow with depth, plain stacks lose rank, …) so every finding has data; the
`Knobs` flip them. Nothing here imports the trainer.

    runs = grid(depth=[4, 8], norm=["post", "pre"], seed=[0, 1])
    sweep = write_sweep(tmp_path / "sweep", runs, swept_keys=["depth", "norm"])
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from resbench.schema import INIT_GRAD_NORM_COLUMNS, INIT_GRAD_NORMS_CSV, INIT_LAYER_COLUMNS, INIT_LAYERS_CSV

DEFAULT_CONFIG = {
    "depth": 4,
    "norm": "pre",
    "norm_type": "layernorm",
    "residual": True,
    "init": "pytorch",
    "width": 32,
    "heads": 2,
    "seed": 0,
    "log_every": 10,
    "init_batches": 1,
    "device": "cpu",
    "model": {"name": "transformer", "ffn_mult": 4},
    "task": {"name": "chars", "seq_len": 16},
    "train": {"steps": 100, "batch_size": 8, "lr": 0.001, "warmup": 10, "optimizer": "adamw",
              "weight_decay": 0.0, "clip": 1.0, "eval_every": 50},
}
BLOCK_PARAMS = {  # param names inside one block, per model
    "transformer": ("attn.qkv.weight", "attn.out.weight", "ffn.fc1.weight", "ffn.fc2.weight", "norm1.weight",
                    "norm2.weight"),
    "mlp": ("ffn.fc1.weight", "ffn.fc2.weight", "norm1.weight"),
}
OUTSIDE_PARAMS = ("embed.weight", "head.weight")
# Per-run settings carried in a run's dict, not config keys: the status, the final loss, and shapes of the
# synthetic numbers (last/first gradient ratio at init, factor on every gradient norm, rank kept per block,
# variance each pre-LN block adds to the stream, how fast the loss falls), and its init draws (`_draws`: a
# count, or one dict of those shapes per draw, the first shaping the run itself: draw 0 is its step 0).
RESERVED = ("_status", "_final_loss", "_init_ratio", "_scale", "_rank_decay", "_rms_per_block", "_speed", "_draws")
DRAW_SPREAD = 0.02  # `_draws=N`: draw d's gradient norms are the run's × (1 + 0.02·d)


@dataclass(frozen=True)
class Knobs:
    post_grows: bool = True  # post-LN init gradient profile rises toward the last block (else falls)
    pre_rms_grows: bool = True  # pre-LN hidden RMS at the last block grows with depth (else flat)
    plain_collapses: bool = True  # rank residual without skips collapses along the stack (else stays)
    warmup_helps_post: bool = True  # post-LN without warmup ends at a high loss (else as good)
    probes: bool = True  # write hidden_rms, act_grad_norm, update_ratio, rank_residual
    val_acc: bool = False  # write val_acc in metrics.csv and summary.json
    grad_norms: str = "full"  # grad_norms.csv rows: "full", "init" (step 0 only) or "none"
    draws: int = 0  # init draws per run, in init_layers.csv and init_grad_norms.csv (0: no such files, as older runs)


def make_config(**overrides: object) -> dict:
    """DEFAULT_CONFIG with overrides; dotted keys reach into groups; `model="mlp"` sets model.name."""
    config = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in overrides.items():
        if key in RESERVED:
            continue
        if key in ("model", "task") and isinstance(value, str):
            key = f"{key}.name"
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return config


def grid(**axes: list) -> list[dict]:
    """Cartesian product of axes, as a list of override dicts."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


# ---------------------------------------------------------------------------------------------
# the synthetic numbers


def _init_ratio(config: dict, knobs: Knobs) -> float:
    """Last/first block gradient-norm ratio at init."""
    depth, norm, residual = config["depth"], config["norm"], str(config["residual"]).lower()
    if residual == "false":
        return 20.0  # plain stacks: gradients vanish toward the first block
    if norm == "post":
        return 1 + 0.15 * depth if knobs.post_grows else 0.5
    return {"pre": 0.8, "deepnorm": 1.2}.get(norm, 1.0)


def default_final_loss(config: dict, knobs: Knobs) -> float:
    depth, norm, residual = config["depth"], config["norm"], str(config["residual"]).lower()
    if residual == "false":
        if norm == "none" and config["model"]["name"] == "mlp" and config["task"]["name"] == "digits" and depth >= 10:
            return math.log(10)
        return 0.4 + 0.04 * depth  # the degradation problem
    if norm == "post" and config["train"]["warmup"] == 0 and knobs.warmup_helps_post:
        return 1.8
    if residual == "rezero":
        return 0.28
    return {"deepnorm": 0.3}.get(norm, 0.3 + 0.005 * depth)


def _profiles(config: dict, knobs: Knobs, steps: np.ndarray, total_steps: int,
              shape: dict) -> dict[str, np.ndarray]:
    """Per-(step, block) arrays, shape (len(steps), depth); `shape` holds a run's RESERVED overrides."""
    depth, norm, residual = config["depth"], config["norm"], str(config["residual"]).lower()
    position = np.arange(depth) / max(depth - 1, 1)  # (L,)
    decay = 0.3 + 0.7 * np.exp(-3 * steps / max(total_steps, 1))  # (S,)
    ratio = shape.get("_init_ratio", _init_ratio(config, knobs))
    grad_norm = np.outer(decay, 0.5 * ratio ** position) * shape.get("_scale", 1.0)
    per_block = 1.0 if norm == "pre" and residual == "true" and knobs.pre_rms_grows else 0.0
    rms = np.sqrt(1 + shape.get("_rms_per_block", per_block) * np.arange(depth, dtype=float))
    kept = shape.get("_rank_decay", 0.5 if residual == "false" and knobs.plain_collapses else None)
    rank = 0.8 * kept ** (np.arange(depth) + 1.0) if kept is not None else np.full(depth, 0.6)  # rank kept per block
    seed_noise = 1 + 0.01 * config["seed"]
    return {
        "grad_norm": grad_norm * seed_noise,
        "hidden_rms": np.tile(rms, (len(steps), 1)) * (1 + 0.1 * steps[:, None] / max(total_steps, 1)),
        "act_grad_norm": grad_norm * 0.1,
        "update_ratio": np.where(steps[:, None] == 0, np.nan, 1e-3 * (1 + position)),
        "rank_residual": np.tile(rank, (len(steps), 1)),
    }


# ---------------------------------------------------------------------------------------------
# writers


def _csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, float_format="%.6g")


def write_run(
    run_dir: Path,
    overrides: dict | None = None,
    *,
    status: str = "completed",
    final_loss: float | None = None,
    knobs: Knobs = Knobs(),
    override_strings: list[str] | None = None,
) -> Path:
    """One run dir: config.yaml, .hydra/overrides.yaml, metrics.csv, grad_norms.csv, layers.csv, summary.json.

    `status` shapes the files: diverged runs stop at 60 % with an infinite loss, interrupted at 50 %,
    failed after the first log, running ones (no summary.json) at 40 %.
    """
    overrides = dict(overrides or {})
    config = make_config(**overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    strings = override_strings if override_strings is not None else [
        f"{k}={_override_text(v)}" for k, v in overrides.items() if k not in RESERVED]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(strings))

    total = config["train"]["steps"]
    every = config["log_every"]
    reach = {"diverged": 0.6, "interrupted": 0.5, "failed": 0.0, "running": 0.4}.get(status, 1.0)
    every_step = np.arange(0, int(total * reach) + 1)  # metrics.csv: a row every step
    steps = every_step[every_step % every == 0]  # (S,) logged steps
    depth = config["depth"]
    final = default_final_loss(config, knobs) if final_loss is None else final_loss
    final *= 1 + 0.01 * config["seed"]
    progress = every_step / max(total, 1)
    rate = 6 * overrides.get("_speed", 1.0)  # how fast the loss falls toward its final value
    decay = (np.exp(-rate * progress) - math.exp(-rate)) / (1 - math.exp(-rate))  # 1 at step 0, 0 at the end
    loss = final + (math.log(10) - final) * decay
    if status == "diverged":
        loss[-1] = np.inf
    logged = every_step % every == 0
    evaluated = (every_step % config["train"]["eval_every"] == 0) & (every_step > 0)
    metrics = pd.DataFrame({
        "step": every_step,
        "loss": loss,
        "val_loss": np.where(evaluated, loss * 1.1, np.nan),
        "lr": config["train"]["lr"] * np.minimum(1, (every_step + 1) / max(config["train"]["warmup"], 1)),
        "grad_norm": np.where(logged, 1 + np.exp(-progress), np.nan),
        "elapsed_s": every_step * 0.01,
    })
    if knobs.val_acc:
        metrics["val_acc"] = np.where(evaluated, 1 - loss / math.log(10), np.nan)
    _csv(metrics, run_dir / "metrics.csv")

    shape = {k: v for k, v in overrides.items() if k in RESERVED}
    draws = draw_shapes(shape, knobs)
    shape.update(draws[0] if draws else {})
    profiles = _profiles(config, knobs, steps, total, shape)
    _csv(_layer_rows("step", steps, profiles, depth, knobs), run_dir / "layers.csv")
    if knobs.grad_norms != "none":
        logged = steps if knobs.grad_norms == "full" else steps[:1]
        _csv(_param_rows("step", logged, profiles["grad_norm"][: len(logged)], config), run_dir / "grad_norms.csv")
    if draws:
        write_draws(run_dir, config, knobs, [{**shape, **draw} for draw in draws])

    if status != "running":
        finite = loss[np.isfinite(loss)]
        summary = {
            "status": status,
            "steps_done": int(every_step[-1]),
            "final_loss": None if status in ("failed", "diverged") else float(finite[-1]),
            "final_val_loss": None if status in ("failed", "diverged") else float(finite[-1] * 1.1),
            "wall_s": float(every_step[-1] * 0.01),
            "n_params": 1000 * depth,
            "error": "RuntimeError: CUDA out of memory" if status == "failed" else None,
            "config_hash": "abc123",
            "slurm_job_id": None,
        }
        if knobs.val_acc:
            summary["final_val_acc"] = float(1 - finite[-1] / math.log(10))
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _layer_rows(position: str, at: np.ndarray, profiles: dict[str, np.ndarray], depth: int,
                knobs: Knobs) -> pd.DataFrame:
    """layers.csv's rows (`position` "step") or an init draw's (`position` "draw"), blocks at each of `at`."""
    layers = pd.DataFrame({position: np.repeat(at, depth), "layer": np.tile(np.arange(depth), len(at))})
    for column in ("grad_norm",) + (("hidden_rms", "act_grad_norm", "update_ratio", "rank_residual")
                                    if knobs.probes else ()):
        layers[column] = profiles[column].ravel()
    return layers


def _param_rows(position: str, at: np.ndarray, block_norms: np.ndarray, config: dict) -> pd.DataFrame:
    """grad_norms.csv's rows at each of `at`: the parameters outside the blocks, then the blocks', each block
    norm of `block_norms` (len(at), L) shared equally by its parameters."""
    params, depth = BLOCK_PARAMS[config["model"]["name"]], config["depth"]
    share = block_norms / math.sqrt(len(params))  # √Σ share² = block norm
    block_rows = pd.DataFrame({
        position: np.repeat(at, depth * len(params)),
        "layer": np.tile(np.repeat(np.arange(depth), len(params)), len(at)),
        "param": np.tile(params, depth * len(at)),
        "grad_norm": np.repeat(share.ravel(), len(params)),
    })
    outside = pd.DataFrame({position: np.repeat(at, len(OUTSIDE_PARAMS)), "layer": np.nan,
                            "param": np.tile(OUTSIDE_PARAMS, len(at)), "grad_norm": 0.1})
    return pd.concat([outside, block_rows]).sort_values(position, kind="stable")


def draw_shapes(shape: dict, knobs: Knobs) -> list[dict]:
    """Each init draw's shape (RESERVED settings), draw 0 first; [] when the run has no draws."""
    draws = shape.get("_draws", knobs.draws)
    if not isinstance(draws, int):
        return [dict(draw) for draw in draws]
    scale = shape.get("_scale", 1.0)
    return [{"_scale": scale * (1 + DRAW_SPREAD * draw)} for draw in range(draws)]


def write_draws(run_dir: Path, config: dict, knobs: Knobs, shapes: list[dict]) -> None:
    """init_layers.csv and init_grad_norms.csv: each draw's step 0, in the columns of the run-dir contract."""
    layers, params = [], []
    for draw, shape in enumerate(shapes):
        profiles = _profiles(config, knobs, np.zeros(1, dtype=int), config["train"]["steps"], shape)
        layers.append(_layer_rows("draw", np.array([draw]), profiles, config["depth"], knobs))
        params.append(_param_rows("draw", np.array([draw]), profiles["grad_norm"], config))
    _csv(pd.concat(layers).assign(stack="").reindex(columns=INIT_LAYER_COLUMNS), run_dir / INIT_LAYERS_CSV)
    _csv(pd.concat(params).assign(stack="").reindex(columns=INIT_GRAD_NORM_COLUMNS), run_dir / INIT_GRAD_NORMS_CSV)


def run_name(overrides: dict, keys: list[str]) -> str:
    """Hydra's override_dirname: `key=value` of the swept keys and seed, comma-joined."""
    shown = [key for key in keys if key in overrides] + (["seed"] if "seed" in overrides and "seed" not in keys else [])
    return ",".join(f"{key}={_override_text(overrides[key])}" for key in shown) or "run"


def _override_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_sweep(
    sweep_dir: Path,
    runs: list[dict],
    *,
    swept_keys: list[str] | None = None,
    sweep_json: bool = True,
    runs_csv: bool = True,
    knobs: Knobs = Knobs(),
) -> Path:
    """A sweep dir: multirun.yaml, sweep.json, runs.csv and one run dir per entry of `runs`.

    Each entry holds overrides plus optional `_status` and `_final_loss`.
    """
    keys = swept_keys if swept_keys is not None else sorted({k for r in runs for k in r if k not in RESERVED} - {"seed"})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"mode": "MULTIRUN"}}))
    rows, names = [], set()
    for overrides in runs:
        name = run_name(overrides, keys)
        while name in names:
            name += "_"
        names.add(name)
        status = overrides.get("_status", "completed")
        write_run(sweep_dir / name, overrides, status=status, final_loss=overrides.get("_final_loss"), knobs=knobs)
        summary_path = sweep_dir / name / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        rows.append({"run": name, "status": summary.get("status", "running"),
                     **{key: overrides.get(key) for key in keys},
                     "final_loss": summary.get("final_loss"), "final_val_loss": summary.get("final_val_loss"),
                     "wall_s": summary.get("wall_s")})
    if sweep_json:
        (sweep_dir / "sweep.json").write_text(json.dumps({"swept_keys": keys, "overrides": [], "n_runs": len(runs)}))
    if runs_csv:
        pd.DataFrame(rows).to_csv(sweep_dir / "runs.csv", index=False)
    return sweep_dir


# ---------------------------------------------------------------------------------------------
# damage


def truncate_last_line(path: Path, keep: int = 5) -> None:
    """Cut the file mid-row, as a killed writer leaves it."""
    data = path.read_bytes().rstrip(b"\n")
    path.write_bytes(data[: data.rfind(b"\n") + 1 + keep])


def break_summary(run_dir: Path) -> None:
    (run_dir / "summary.json").write_text('{"status": "completed", "final_lo')
