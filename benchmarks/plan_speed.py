"""Planning speed: how long `resbench sweep 'seed=range(N)' --dry-run` spends composing and validating its
runs, with the job configs shared (hydra_adapter.JobConfigs, what planning uses) vs each job composed in full
(Hydra's load_sweep_config per job, as before), side by side in one process on the same jobs. Both give
the same configs and run names (checked). Target: well under 1 s per 1,000 runs.

    python benchmarks/plan_speed.py             # N=200
    python benchmarks/plan_speed.py --runs 1000
    python benchmarks/plan_speed.py --smoke     # 4 runs: proves it runs
"""

from __future__ import annotations

import argparse
import time

from _smoke import HELP
from omegaconf import DictConfig, OmegaConf

from resbench import config
from resbench.hydra_adapter import JobConfigs, compose_multirun, hydra_instance


def plain(cfg: DictConfig) -> tuple[str, dict]:
    config = {key: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
              for key, node in cfg.items() if key != "hydra"}
    return str(cfg.hydra.sweep.subdir), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.runs = 4
    jobs = [[f"seed={seed}", "threads=1"] for seed in range(args.runs)]
    config.register()  # the typed config's schemas, which conf/'s files extend, into Hydra's ConfigStore
    with hydra_instance() as hydra:
        base = compose_multirun(hydra, ["seed=range(2)", "threads=1"])
        start = time.perf_counter()
        full = [plain(hydra.config_loader.load_sweep_config(base, job)) for job in jobs]
        full_s = time.perf_counter() - start
        start = time.perf_counter()
        composer = JobConfigs(hydra, base)
        shared = [plain(composer.compose(job)) for job in jobs]
        shared_s = time.perf_counter() - start
    assert shared == full, "shared compositions differ from full ones"
    print(f"{args.runs} jobs: composed in full {full_s:.2f} s ({1000 * full_s / args.runs:.1f} s per 1,000), "
          f"shared {shared_s:.2f} s ({1000 * shared_s / args.runs:.1f} s per 1,000); "
          f"speed-up {full_s / shared_s:.1f}x")


if __name__ == "__main__":
    main()
