"""resbench: see, layer by layer, what residual connections and normalization placement do to deep networks.

Everything below the CLI is plain Python: `from resbench import train; train.run(config, run_dir)`.
"""

__version__ = "0.1.0"
