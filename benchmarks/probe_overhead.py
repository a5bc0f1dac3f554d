"""What the probes cost: steps/s of resbench training against the bare PyTorch loop, side by side.

    python benchmarks/probe_overhead.py                      # the default model (chars, depth 6, width 64)
    python benchmarks/probe_overhead.py depth=12 norm=post --reps 7 --device cuda
    python benchmarks/probe_overhead.py --smoke               # seconds: proves it runs

Every variant trains the same model from the same initial weights on the same batches, in one process;
repetitions are interleaved (the order rotates each round) and each variant's median steps/s is reported
with its ratio to the bare loop's. The timed window starts after a few warm-up steps, holds a multiple of
10 steps (so log_every=10 logs exactly a tenth of them) and ends before the last step's validation.

- bare: forward, loss, backward, `loss.item()`, optimizer step. Nothing else.
- resbench, log_every=1: the resbench trainer with every probe on every step (grad_norms.csv,
  layers.csv and metrics.csv rows written and flushed every step).
- resbench, log_every=10: the same, logging every 10th step.
- lightning + grad_norm: when `lightning` is installed (`pip install -e ".[bench]"`), Lightning training the
  same model with `lightning.pytorch.utilities.grad_norm` logged every step (CSVLogger, log_every_n_steps=1).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from _smoke import HELP, TINY_MODEL

from resbench import models, trainer
from resbench.config import compose, to_plain

WARMUP = 9  # steps before the timed window (step 0 holds the one-off init work)


# Wall-clock time by default; with --clock process, this process's CPU time, which other processes
# on a busy machine do not inflate (use it with --threads 1 on the CPU).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
clock_now = CLOCKS["wall"]


class StepClock:
    """End-of-step timestamps (the device synchronised first, so they are honest on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def tick(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(clock_now())

    def step_times(self, window: int) -> list[float]:
        """Seconds of each step in the window (steps WARMUP+1 … WARMUP+window)."""
        ends = self.times[WARMUP : WARMUP + window + 1]
        return [b - a for a, b in itertools.pairwise(ends)]


class ClockProgress(trainer.Silent):
    """The trainer's Progress hook, used only to stamp the end of every step."""

    def __init__(self, clock: StepClock):
        self.clock = clock

    def step(self, step, total, loss, val_loss, steps_per_s):
        self.clock.tick()


def fresh_trainer(config: dict, workdir: Path, progress: trainer.Progress) -> trainer.Trainer:
    """A set-up trainer (not timed): setup seeds torch, so every variant starts from the same weights."""
    one_run = trainer.Trainer(config, Path(tempfile.mkdtemp(dir=workdir)), progress)
    one_run.setup()
    return one_run


def time_resbench(config: dict, log_every: int, window: int, workdir: Path) -> list[float]:
    config = {**config, "log_every": log_every}
    device = trainer.pick_device(config["device"])
    clock = StepClock(device)
    one_run = fresh_trainer(config, workdir, ClockProgress(clock))
    start = time.perf_counter()
    one_run.finish(one_run.loop(start), start)
    return clock.step_times(window)


def time_bare(config: dict, window: int, workdir: Path) -> list[float]:
    """The plain PyTorch loop on the trainer's own model, optimizer and batches."""
    one_run = fresh_trainer(config, workdir, trainer.Silent())
    model, optimizer, task, device = one_run.model, one_run.optimizer, one_run.task, one_run.device
    generator = torch.Generator().manual_seed(config["seed"])
    batch_size = config["train"]["batch_size"]
    clock = StepClock(device)
    for _ in range(config["train"]["steps"]):
        x, y = (t.to(device) for t in task.batch(generator, batch_size))
        loss = trainer.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss.item()
        optimizer.step()
        clock.tick()
    one_run.recorder.close(one_run.summary)
    return clock.step_times(window)


def lightning_timer() -> Callable[[dict, int, Path], list[float]] | None:
    """Lightning on the same model, batches and optimizer, logging grad_norm every step; None if absent."""
    try:
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import CSVLogger
        from lightning.pytorch.utilities import grad_norm
    except ImportError:
        return None
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no banners between the timings
    warnings.filterwarnings("ignore", module="lightning")

    class Module(pl.LightningModule):
        def __init__(self, model: torch.nn.Module, train_cfg: dict):
            super().__init__()
            self.model = model
            self.train_cfg = train_cfg

        def training_step(self, batch, batch_idx):
            x, y = batch
            return trainer.cross_entropy(self.model(x), y)

        def on_before_optimizer_step(self, optimizer):
            self.log_dict(grad_norm(self.model, norm_type=2))

        def configure_optimizers(self):
            return trainer.OPTIMIZERS[self.train_cfg["optimizer"]](self.parameters(), self.train_cfg)

    class Clock(pl.Callback):
        def __init__(self, clock: StepClock):
            self.clock = clock

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.clock.tick()

    def time_lightning(config: dict, window: int, workdir: Path) -> list[float]:
        one_run = fresh_trainer(config, workdir, trainer.Silent())
        generator = torch.Generator().manual_seed(config["seed"])
        batches = [one_run.task.batch(generator, config["train"]["batch_size"])
                   for _ in range(config["train"]["steps"])]
        clock = StepClock(one_run.device)
        accelerator = "gpu" if one_run.device.type == "cuda" else "cpu"
        runner = pl.Trainer(max_steps=config["train"]["steps"], accelerator=accelerator, devices=1,
                            logger=CSVLogger(tempfile.mkdtemp(dir=workdir)), log_every_n_steps=1,
                            enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, callbacks=[Clock(clock)])
        loader = torch.utils.data.DataLoader(batches, batch_size=None)  # the batches as they are
        runner.fit(Module(one_run.model, config["train"]), train_dataloaders=loader)
        one_run.recorder.close(one_run.summary)
        return clock.step_times(window)

    return time_lightning


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="resbench config overrides (depth=12 norm=post ...)")
    parser.add_argument("--window", type=int, default=100, help="timed steps per repetition (multiple of 10)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions of every variant")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (steadier on a busy machine, with --threads 1)")
    parser.add_argument("--no-lightning", action="store_true", help="skip Lightning even when installed")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.overrides, args.window, args.reps, args.threads = [*TINY_MODEL, *args.overrides], 10, 1, 1
    if args.window % 10:
        parser.error("--window must be a multiple of 10")
    return args


def main() -> None:
    args = parse_args()
    global clock_now
    clock_now = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = WARMUP + args.window + 2  # the last step (with its validation) stays out of the window
    config = to_plain(compose([
        *args.overrides, f"device={args.device}", f"train.steps={steps}", f"train.eval_every={steps}",
    ]))

    workdir = Path(tempfile.mkdtemp(prefix="probe_overhead_"))
    variants: dict[str, Callable[[], list[float]]] = {
        "bare PyTorch loop": lambda: time_bare(config, args.window, workdir),
        "resbench, every probe every step": lambda: time_resbench(config, 1, args.window, workdir),
        "resbench, log_every=10": lambda: time_resbench(config, 10, args.window, workdir),
    }
    time_lightning = None if args.no_lightning else lightning_timer()
    if time_lightning is not None:
        variants["lightning + grad_norm every step"] = lambda: time_lightning(config, args.window, workdir)

    step_times: dict[str, list[list[float]]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate the order
            step_times[name].append(variants[name]())
    model = models.model_keys(config)
    print(f"{model['name']} depth={model['depth']} width={model['width']} norm={model['norm']} "
          f"batch={config['train']['batch_size']} task={config['task']['name']} device={args.device} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}; {args.reps} interleaved "
          f"repetitions of {args.window} steps, {args.clock} clock")
    print(f"  {'':<34} {'steps/s':>8} {'ratio':>7}   {'window steps/s':>14} {'ratio':>7}")
    robust = {name: steps_per_s(times) for name, times in step_times.items()}
    window = {name: statistics.median(len(t) / sum(t) for t in times) for name, times in step_times.items()}
    bare = names[0]
    for name in names:
        print(f"  {name:<34} {robust[name]:8.2f} {robust[name] / robust[bare]:7.3f}   "
              f"{window[name]:14.2f} {window[name] / window[bare]:7.3f}")
    cycle = step_times["resbench, log_every=10"]
    logged = statistics.median(t for times in cycle for t in times[0::10])
    unlogged = statistics.median(t for times in cycle for position in range(1, 10) for t in times[position::10])
    print(f"  a logged step (every probe, all rows written) takes {1e3 * (logged - unlogged):.2f} ms more than "
          f"an unlogged one of {1e3 * unlogged:.2f} ms ({logged / unlogged - 1:+.1%}), in the log_every=10 runs")
    print("steps/s: per-step times, the median at each position of the 10-step logging cycle over all "
          "repetitions, averaged over the cycle (a step slowed by another process does not count); "
          "window: the median over repetitions of each window's steps/s")


def steps_per_s(reps: list[list[float]]) -> float:
    """1 / mean over the 10 positions of the logging cycle of the median step time at that position."""
    by_position = [[t for times in reps for t in times[position::10]] for position in range(10)]
    return 10 / sum(statistics.median(times) for times in by_position)


if __name__ == "__main__":
    main()
