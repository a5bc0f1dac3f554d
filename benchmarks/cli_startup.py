"""How long `resbench --help` and a TAB completion take, as a shell would start them (target: ≤ 0.5 s).

    python benchmarks/cli_startup.py            # median of 10 runs each, beside a bare `python -c pass`
    python benchmarks/cli_startup.py --smoke    # one run each: proves it runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _smoke import HELP

RESBENCH = str(Path(sys.executable).parent / "resbench")  # the installed script, as a shell runs it
COMMANDS = {
    "python -c pass": ([sys.executable, "-c", "pass"], {}),
    "resbench --help": ([RESBENCH, "--help"], {}),
    "TAB after norm=": ([RESBENCH],
                        {"_RESBENCH_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "resbench sweep norm="}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    for name, (command, env) in COMMANDS.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - start)
        print(f"{name:<18} {statistics.median(times):6.3f} s (median of {args.repeats}; min {min(times):.3f})")


if __name__ == "__main__":
    main()
