"""What resbench's Lightning callback costs: steps/s of `Trainer.fit` with ResbenchCallback against the same
Lightning loop without it.

    python benchmarks/lightning_overhead.py                 # nanoGPT-style depth 6, width 64, seq 32, batch 32
    python benchmarks/lightning_overhead.py --smoke         # seconds: proves it runs

Three copies of the same LightningModule (same initial weights, same batches, AdamW, fp32, CPU) are fitted in
interleaved rounds of `--block` steps in this process (the order rotating): without the callback, with it at
log_every=1 (every probe every step) and at log_every=10. Each round is one `fit` per variant on its own model
(a fresh Trainer, so every round's step 0 is a logged one, as in a run); the time is taken from the start of
its second batch to the end of training, so Trainer set-up is not counted. Ratios are bare time / watched time
per round; the first round is warm-up.
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _rounds import VARIANTS, parse_args, print_ratios, rounds
from watch_nanogpt import GPT, char_batches

import lightning.pytorch as pl
from resbench.integrations.lightning import ResbenchCallback


class LitGPT(pl.LightningModule):
    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


class Stopwatch(pl.Callback):
    """Seconds from the start of the second batch to the end of training."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def fit_block(module: LitGPT, batches: list, log_every: int | None, run_dir: Path) -> float:
    stopwatch = Stopwatch()
    callbacks = [stopwatch] if log_every is None else [
        stopwatch, ResbenchCallback(blocks="model.transformer.h", run_dir=run_dir, log_every=log_every)]
    trainer = pl.Trainer(max_steps=len(batches), accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=callbacks, default_root_dir=run_dir)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return stopwatch.seconds


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")  # Lightning's advice on workers and logging, between the timings

    torch.manual_seed(0)
    vocab, stream = char_batches()
    base = LitGPT(GPT(vocab, depth=args.depth))
    modules = {name: copy.deepcopy(base) for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="resbench-lightning-bench-") as tmp:
        times = rounds(args.repeats, Path(tmp), lambda: [next(stream) for _ in range(args.block)],
                       lambda name, batches, log_every, run_dir: fit_block(modules[name], batches, log_every, run_dir))
    print_ratios(f"Lightning, nanoGPT-style depth={args.depth} width=64 seq=32 batch=32 "
                 f"threads={torch.get_num_threads()}", args, times)


if __name__ == "__main__":
    main()
