"""What checkpoints cost: steps/s of a run with train.checkpoint_every=100 against the same run without.

    python benchmarks/checkpoint_cost.py                        # default model: depth 6, width 64, seq_len 32
    python benchmarks/checkpoint_cost.py depth=24 --every 50    # any config overrides, another interval
    python benchmarks/checkpoint_cost.py device=cuda precision=bf16
    python benchmarks/checkpoint_cost.py --smoke                # seconds: proves it runs

Both runs go on in this process side by side: the one with checkpoints in the main thread, the one
without in a second thread, taking turns every `--turn` steps (a baton: only one computes at a time),
so bursts of load from other processes land on both alike. Each timed block of `--every` steps holds
exactly one checkpoint write; the first block pair is warm-up, step 0 and the last step are left out.
Then one checkpoint write (model, Adam state, RNG states, CSV positions; fsync and rename) is timed alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from _smoke import HELP, TINY_MODEL

from resbench import checkpoint, models, trainer
from resbench.config import check


class Baton:
    """A trainer Progress that times blocks of steps and hands the turn to its partner after each."""

    def __init__(self, block: int, turn: int, mine: threading.Event, theirs: threading.Event):
        self.block, self.turn, self.mine, self.theirs = block, turn, mine, theirs
        self.partner: Baton | None = None
        self.done = threading.Event()
        self.blocks: list[float] = []  # seconds per block of steps (each with one checkpoint, if any)
        self._elapsed, self._counted, self._mark = 0.0, 0, 0.0

    def run_started(self, config: dict[str, Any], run_dir: Path) -> None:
        self.mine.wait()
        self._mark = time.perf_counter()

    def run_finished(self, summary: dict[str, Any], profile: Any) -> None:
        self.done.set()
        self.theirs.set()  # never leave the partner waiting

    def step(self, step: int, total: int, loss: float, val_loss: float | None, steps_per_s: float) -> None:
        if 0 < step < total - 1:
            self._elapsed += time.perf_counter() - self._mark
            self._counted += 1
            if self._counted % self.block == 0:
                self.blocks.append(self._elapsed)
                self._elapsed = 0.0
            if self._counted % self.turn == 0:
                self.mine.clear()
                self.theirs.set()
                if not self.partner.done.is_set():
                    self.mine.wait()
        self._mark = time.perf_counter()


def side_by_side(config: dict[str, Any], every: int, turn: int) -> tuple[list[float], list[float]]:
    """Block times of the run with checkpoints and of the one without, taking turns."""
    with_turn, without_turn = threading.Event(), threading.Event()
    with_ckpt = Baton(every, turn, with_turn, without_turn)
    without_ckpt = Baton(every, turn, without_turn, with_turn)
    with_ckpt.partner, without_ckpt.partner = without_ckpt, with_ckpt
    plain = {**config, "train": {**config["train"], "checkpoint_every": None}}
    saving = {**config, "train": {**config["train"], "checkpoint_every": every}}
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as root:
        other = threading.Thread(target=trainer.run, args=(plain, Path(root) / "off", without_ckpt))
        other.start()
        with_turn.set()
        summary = trainer.run(saving, Path(root) / "on", progress=with_ckpt)
        other.join()
    assert summary["status"] == "completed", summary
    return with_ckpt.blocks[1:], without_ckpt.blocks[1:]


def one_write(config: dict[str, Any], repeats: int = 10) -> tuple[float, int]:
    """Median seconds of one checkpoint write of this config's model and its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as root:
        one_run = trainer.Trainer(config, Path(root))
        one_run.setup()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            one_run.save_checkpoint(1, start)
            times.append(time.perf_counter() - start)
        size = (Path(root) / checkpoint.CHECKPOINT_PT).stat().st_size
        one_run.recorder.close(one_run.summary)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. depth=12 device=cuda")
    parser.add_argument("--every", type=int, default=100, help="checkpoint_every, steps per block (default 100)")
    parser.add_argument("--repeats", type=int, default=4, help="timed block pairs (default 4)")
    parser.add_argument("--turn", type=int, default=5, help="steps per turn of each run (default 5)")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.overrides, args.every, args.repeats, args.turn = [*TINY_MODEL, *args.overrides], 4, 1, 2

    steps = (args.repeats + 1) * args.every + 2  # + warm-up block, step 0 and the last step
    config = check([*args.overrides, f"train.steps={steps}", f"train.eval_every={steps + 1}"])
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    on, off = side_by_side(config, args.every, args.turn)
    ratios = [b / a for a, b in zip(on, off)]  # steps/s with over steps/s without, per block pair
    write_s, size = one_write(config)
    model = models.model_keys(config)
    print(f"model {model['name']} depth={model['depth']} width={model['width']} "
          f"seq_len={config['task'].get('seq_len')} batch={config['train']['batch_size']} "
          f"device={trainer.pick_device(config['device'])} precision={config['precision']} "
          f"threads={torch.get_num_threads()} · {args.repeats} × {args.every} steps each, turns of {args.turn}")
    print(f"checkpoint_every=null  {statistics.median(args.every / b for b in off):8.2f} steps/s (median)")
    print(f"checkpoint_every={args.every:<5} {statistics.median(args.every / a for a in on):8.2f} steps/s (median)")
    print(f"ratio                  {statistics.median(ratios):8.3f}  (median of paired blocks; "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}; all steps: {sum(off) / sum(on):.3f})")
    print(f"one checkpoint write   {write_s * 1000:8.1f} ms ({size / 1e6:.2f} MB, median of 10)")


if __name__ == "__main__":
    main()
