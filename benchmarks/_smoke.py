"""What `--smoke` shrinks every benchmark to: a tiny model and a handful of steps, through the same code as the
real measurement. It proves the benchmark still runs (tests/test_benchmarks.py runs each one so); its numbers
mean nothing."""

HELP = "a tiny model and a handful of steps, in seconds: proves the benchmark runs (its numbers mean nothing)"
# Config overrides of a tiny run (the test suite's size): 2 blocks of width 16, batches of 4 sequences of 8.
TINY_MODEL = ["depth=2", "width=16", "heads=2", "task.seq_len=8", "train.batch_size=4", "threads=1"]
