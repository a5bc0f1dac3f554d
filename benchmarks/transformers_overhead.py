"""What resbench's Hugging Face callback costs: steps/s of `transformers.Trainer` with ResbenchCallback against
the same Trainer without it.

    python benchmarks/transformers_overhead.py              # GPT-2 from a config: 6 layers, width 64, seq 32, batch 32
    python benchmarks/transformers_overhead.py --smoke      # seconds: proves it runs

Three copies of the same randomly initialised GPT2LMHeadModel (no download; character ids of CPython's docs,
as in examples/watch_nanogpt.py) are trained in interleaved rounds of `--block` steps in this process (the
order rotating), on the CPU, AdamW, fp32: without the callback, with it at log_every=1 (every probe every
step) and at log_every=10. Each round is one `train()` per variant on its own model (a fresh Trainer, so every
round's step 0 is a logged one, as in a run); the time runs from the start of its second step to the end of
training. Ratios are bare time / watched time per round; the first round is warm-up.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _rounds import VARIANTS, parse_args, print_ratios, rounds
from watch_nanogpt import char_batches

import transformers
from resbench.integrations.transformers import ResbenchCallback


class Stopwatch(transformers.TrainerCallback):
    """Seconds from the start of the second optimizer step to the end of training."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 1:
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start


def train_block(model, examples: list[dict], steps: int, log_every: int | None, run_dir: Path) -> float:
    stopwatch = Stopwatch()
    callbacks = [stopwatch] if log_every is None else [stopwatch, ResbenchCallback(run_dir=run_dir, log_every=log_every)]
    args = transformers.TrainingArguments(
        output_dir=str(run_dir / "out"), report_to=[], max_steps=steps, per_device_train_batch_size=32,
        learning_rate=3e-3, lr_scheduler_type="constant", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, use_cpu=True, remove_unused_columns=False, dataloader_num_workers=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=examples, callbacks=callbacks)
    trainer.remove_callback(transformers.PrinterCallback)  # no metrics dict printed between the timings
    trainer.train()
    return stopwatch.seconds


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    vocab, stream = char_batches()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=64, n_layer=args.depth, n_head=4)
    base = transformers.GPT2LMHeadModel(config)
    models = {name: copy.deepcopy(base) for name in VARIANTS}

    def examples() -> list[dict]:  # one round's: (block·32, 32) token ids, the same for every variant
        ids = torch.cat([next(stream)[0] for _ in range(args.block)])
        return [{"input_ids": row, "labels": row} for row in ids]

    with tempfile.TemporaryDirectory(prefix="resbench-transformers-bench-") as tmp:
        times = rounds(args.repeats, Path(tmp), examples, lambda name, inputs, log_every, run_dir: train_block(
            models[name], inputs, args.block, log_every, run_dir))
    print_ratios(f"transformers Trainer, GPT-2 depth={args.depth} width=64 seq=32 batch=32 "
                 f"threads={torch.get_num_threads()}", args, times)


if __name__ == "__main__":
    main()
