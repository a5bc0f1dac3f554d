"""What the trainer's logging costs: steps/s of the resbench Trainer logging every step against a bare loop.

    python benchmarks/train_overhead.py                       # default model: depth 6, width 64, seq_len 32, batch 32
    python benchmarks/train_overhead.py depth=12 --block 20   # any config overrides
    python benchmarks/train_overhead.py --log-every 1         # every step only (default: 1, then 10)
    python benchmarks/train_overhead.py logger=tensorboard    # with TensorBoard event files written too
    python benchmarks/train_overhead.py --smoke               # seconds: proves it runs

Both run in this process, interleaved: the Trainer (each --log-every, every file written to a temp dir)
calls its Progress after each step, and every `--block` trainer steps that callback runs `--block`
steps of the bare loop — the same model config, Adam, forward/backward/step over pre-generated
batches, nothing logged. So machine noise lands on both alike. Step 0 (its gradient probes at init)
and the last step (validation) are left out of the trainer's time; the first block pair is warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _smoke import HELP, TINY_MODEL

from resbench import loggers, models, tasks, trainer
from resbench.config import check

# Wall-clock time by default; with --clock process, this process's CPU time (all its threads, the event
# writer's too), which other processes on a busy machine do not inflate (as in probe_overhead.py).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
clock_now = CLOCKS["wall"]


class BareLoop:
    """The same model and optimizer with nothing around them: the fastest the trainer could go."""

    def __init__(self, config: dict[str, Any], device: torch.device, n_batches: int = 64):
        torch.manual_seed(config["seed"] + 1)
        task = tasks.build(config["task"], config["train"]["batch_size"])
        self.model = models.build(models.model_keys(config), task.spec).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["train"]["lr"],
                                          weight_decay=config["train"]["weight_decay"])
        generator = torch.Generator().manual_seed(config["seed"])
        self.batches = [tuple(t.to(device) for t in task.batch(generator, config["train"]["batch_size"]))
                        for _ in range(n_batches)]
        self.device = device
        self.position = 0

    def run(self, steps: int) -> float:
        """Seconds for `steps` optimizer steps."""
        start = clock_now()
        for _ in range(steps):
            x, y = self.batches[self.position % len(self.batches)]
            self.position += 1
            logits = self.model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return clock_now() - start


class Interleaved:
    """A trainer Progress that times each trainer step and, every `block` steps, runs a bare block."""

    def __init__(self, bare: BareLoop, block: int):
        self.bare, self.block = bare, block
        self.trainer_blocks: list[float] = []  # seconds per block of trainer steps
        self.bare_blocks: list[float] = []
        self._elapsed = 0.0
        self._counted = 0
        self._mark = 0.0

    def run_started(self, config: dict[str, Any], run_dir: Path) -> None: ...

    def run_finished(self, summary: dict[str, Any], profile: Any) -> None: ...

    def step(self, step: int, total: int, loss: float, val_loss: float | None, steps_per_s: float) -> None:
        now = clock_now()
        if 0 < step < total - 1:
            self._elapsed += now - self._mark
            self._counted += 1
            if self._counted == self.block:
                self.trainer_blocks.append(self._elapsed)
                self.bare_blocks.append(self.bare.run(self.block))
                self._elapsed, self._counted = 0.0, 0
        self._mark = clock_now()


class TimedListener:
    """A logger (the `logger` key's step listener) whose own time in `log` is summed: its cost measured
    directly, apart from the machine's noise on whole steps."""

    def __init__(self, inner: Any):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def log(self, *rows: Any) -> None:
        start = clock_now()
        self.inner.log(*rows)
        self.seconds += clock_now() - start
        self.calls += 1

    def close(self, summary: dict[str, Any]) -> None:
        self.inner.close(summary)


def time_listeners(name: str) -> list[TimedListener]:
    """Wrap logger `name`'s listeners in TimedListener; returns the list they are added to."""
    timed: list[TimedListener] = []
    factory = loggers.LOGGERS[name]
    def timed_factory(run_dir: Path, config: dict[str, Any]) -> TimedListener:
        listener = TimedListener(factory(run_dir, config))
        timed.append(listener)
        return listener

    if factory is not None:
        loggers.LOGGERS[name] = timed_factory
    return timed


def measure(overrides: list[str], log_every: int, block: int, repeats: int) -> None:
    """Time the trainer at `log_every` against the bare loop, interleaved, and print the ratio."""
    steps = (repeats + 1) * block + 2  # + warm-up block, step 0 and the last step
    config = check([*overrides, f"log_every={log_every}", f"train.steps={steps}",
                              f"train.eval_every={steps + 1}"])
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = trainer.pick_device(config["device"])
    timed = time_listeners(config.get("logger") or "none")
    bare = BareLoop(config, device)
    interleaved = Interleaved(bare, block)
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as run_dir:
        summary = trainer.run(config, Path(run_dir), progress=interleaved)
        rows = len((Path(run_dir) / "grad_norms.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert summary["status"] == "completed", summary

    trainer_rates = [block / s for s in interleaved.trainer_blocks[1:]]
    bare_rates = [block / s for s in interleaved.bare_blocks[1:]]
    ratios = [t / b for t, b in zip(trainer_rates, bare_rates)]
    model = models.model_keys(config)
    print(f"model {model['name']} depth={model['depth']} width={model['width']} "
          f"seq_len={config['task'].get('seq_len')} batch={config['train']['batch_size']} "
          f"device={device} threads={torch.get_num_threads()} logger={config.get('logger', 'none')} · "
          f"{repeats} × {block} steps each · {rows} grad_norms rows written")
    print(f"bare loop   {statistics.median(bare_rates):8.1f} steps/s (median)")
    print(f"trainer     {statistics.median(trainer_rates):8.1f} steps/s (median, log_every={log_every})")
    print(f"ratio       {statistics.median(ratios):8.3f}  (log_every={log_every}; median of paired blocks; "
          f"min {min(ratios):.3f}, max {max(ratios):.3f})")
    for listener in timed:
        per_step = listener.seconds / max(listener.calls, 1)
        step_s = 1 / statistics.median(trainer_rates)
        print(f"logger      {per_step * 1e3:8.3f} ms per recorded step in its log() ({listener.calls} calls), "
              f"{per_step / step_s:.1%} of a trainer step: alone it allows {step_s / (step_s + per_step):.3f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. depth=12 device=cpu")
    parser.add_argument("--block", type=int, default=50, help="steps per block (default 50)")
    parser.add_argument("--repeats", type=int, default=8, help="timed block pairs (default 8)")
    parser.add_argument("--log-every", type=int, nargs="+", default=[1, 10],
                        help="the trainer's log_every, one measurement each (default: 1 10, every step and "
                             "the default interval)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time (default) or this process's CPU time (steadier on a busy machine)")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.overrides, args.block, args.repeats = [*TINY_MODEL, *args.overrides], 2, 1
    global clock_now
    clock_now = CLOCKS[args.clock]
    for log_every in args.log_every:
        measure(args.overrides, log_every, args.block, args.repeats)

if __name__ == "__main__":
    main()
