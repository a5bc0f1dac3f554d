"""How much evidence a verdict needs, and the run sets that used to fool the engine: seeds dropped or never
paired, runs without a seed, copies of one config, failures at the shallow or a middle depth, values on a
margin's edge, unmeasurable effects beside measured ones, step 0 counted once per training key, runs that
took no step. Each was a wrong line once; each test reproduces it. Synthetic runs only, no plots: fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from report_fixtures import Knobs, grid, write_sweep

from resbench import api
from resbench.report import aggregate, build, build_report, findings, load
from resbench.report.quantities import Evidence
from resbench.report.verdict import (
    AGREES,
    AT_INIT,
    DISAGREES,
    INCONCLUSIVE,
    TRAINED,
    Finding,
    Margin,
    Units,
    part,
)

SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}
XIONG, WANG, HE, SEED = "Xiong et al. 2020", "Wang et al. 2022", "He et al. 2016", "the seed article"


def evidence(sweep: Path) -> Evidence:
    run_set = load.load([sweep])
    return Evidence.of(run_set, aggregate.per_run(run_set, aggregate.group_keys(run_set)))


def sweep_of(tmp_path: Path, runs: list[dict], keys: list[str] | None = None) -> Path:
    """A synthetic sweep whose runs measured 8 init draws each, as `init_draws`' default."""
    return write_sweep(tmp_path / "sweep", [{**SMALL, **run} for run in runs], swept_keys=keys, knobs=Knobs(draws=8))


def computed(tmp_path: Path, runs: list[dict], keys: list[str] | None = None) -> list[Finding]:
    return findings.compute_findings(evidence(sweep_of(tmp_path, runs, keys)))


def about(found: list[Finding], source: str, words: str) -> Finding:
    matches = [f for f in found if f.source == source and words in f.claim + f.comparison]
    assert len(matches) == 1, [f.text() for f in found]
    return matches[0]


def warmup_runs(losses: dict[tuple[int, int], float], norm: str = "post", **settings: object) -> list[dict]:
    """{(warmup, seed): final loss} of one placement."""
    return [{"norm": norm, "train.warmup": warmup, "seed": seed, "_final_loss": loss, **settings}
            for (warmup, seed), loss in losses.items()]


def rescued(tmp_path: Path, runs: list[dict]) -> Finding:
    return about(computed(tmp_path, runs, ["norm", "train.warmup"]), XIONG, "warmup rescues")


# ---------------------------------------------------------------------------------------------
# seeds: enough of them, none dropped


def test_a_training_outcome_on_one_seed_is_inconclusive_and_says_where_it_leans(tmp_path):
    finding = rescued(tmp_path, warmup_runs({(0, 0): 1.8, (5, 0): 0.3}))
    assert finding.verdict == INCONCLUSIVE
    assert "leans agrees" in finding.value and "1 seed" in finding.value
    assert finding.settle.endswith("seed=0,1,2")


def test_three_paired_seeds_decide_a_training_outcome(tmp_path):
    finding = rescued(tmp_path, warmup_runs({(w, s): 1.8 if w == 0 else 0.3 for w in (0, 5) for s in (0, 1, 2)}))
    assert finding.verdict == AGREES and "3 seeds" in finding.value and not finding.settle


def test_seeds_only_one_side_ran_are_counted_and_contradict(tmp_path):
    """Without warmup seeds 0/1/2 end at 1.8/0.3/0.3; with warmup only seed 0 ran: seeds 1 and 2 contradict."""
    finding = rescued(tmp_path, warmup_runs({(0, 0): 1.8, (0, 1): 0.3, (0, 2): 0.3, (5, 0): 0.3}))
    assert finding.verdict == INCONCLUSIVE and "split" in finding.value
    assert "2 unpaired" in finding.value


def test_no_common_seed_never_pairs_the_lowest_of_each_side(tmp_path):
    finding = rescued(tmp_path, warmup_runs({(0, 0): 1.8, (0, 1): 1.8, (0, 2): 1.8, (5, 3): 0.3, (5, 4): 0.3,
                                             (5, 5): 0.3}))
    assert finding.verdict == INCONCLUSIVE and "0 seeds" in finding.value and "6 unpaired" in finding.value


def drop_seed(sweep: Path) -> None:
    """Every run's config without its `seed` key, as `resbench.watch` records a model it did not seed."""
    for path in sweep.glob("*/config.yaml"):
        config = yaml.safe_load(path.read_text())
        config.pop("seed")
        path.write_text(yaml.safe_dump(config))


def test_runs_without_a_seed_key_do_not_collapse_into_one_pair(tmp_path):
    """Three runs a side, none with a seed (as `resbench.watch` records them): each is a unit of its own."""
    runs = [{"norm": "post", "train.warmup": w, "_final_loss": 1.8 if w == 0 else 0.3}
            for w in (0, 5) for _ in range(3)]
    sweep = sweep_of(tmp_path, runs, ["norm", "train.warmup"])
    drop_seed(sweep)
    ev = evidence(sweep)
    finding = about(findings.compute_findings(ev), XIONG, "warmup rescues")
    assert finding.verdict == INCONCLUSIVE and "6 without a seed" in finding.value
    assert any("6 run(s) without a seed" in warning for warning in build.evidence_warnings(ev.runs, ev.config_keys))


@pytest.mark.parametrize("copy_name", ["a-copy", "z-copy"])  # before and after the original in directory order
def test_a_copied_run_is_named_and_never_decides_by_directory_order(tmp_path, copy_name):
    runs = warmup_runs({(w, s): 1.8 if w == 0 else 0.3 for w in (0, 5) for s in (0, 1, 2)})
    sweep = sweep_of(tmp_path, runs, ["norm", "train.warmup"])
    original = sweep / "norm=post,train.warmup=0,seed=1"
    shutil.copytree(original, sweep / copy_name)
    metrics = pd.read_csv(sweep / copy_name / "metrics.csv")
    metrics["loss"] = np.minimum(metrics["loss"], 0.3)  # the copy trained fine without warmup: it contradicts
    metrics.to_csv(sweep / copy_name / "metrics.csv", index=False)
    summary = sweep / copy_name / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "final_loss": 0.3}))
    ev = evidence(sweep)
    finding = about(findings.compute_findings(ev), XIONG, "warmup rescues")
    assert finding.verdict == INCONCLUSIVE and "split" in finding.value
    warnings = build.evidence_warnings(ev.runs, ev.config_keys)
    assert any(copy_name in warning and original.name in warning for warning in warnings), warnings


# ---------------------------------------------------------------------------------------------
# every value of the claim's variable; failures judged where they happened


def deepnet_runs(post: dict[int, object], deepnorm: dict[int, object], seeds=(0, 1, 2)) -> list[dict]:
    """{depth: final loss, or "diverged"} per placement."""
    runs = []
    for norm, losses in (("post", post), ("deepnorm", deepnorm)):
        for depth, loss in losses.items():
            outcome = {"_status": "diverged"} if loss == "diverged" else {"_final_loss": loss}
            runs += [{"norm": norm, "depth": depth, "seed": seed, **outcome} for seed in seeds]
    return runs


def deepnet(tmp_path: Path, post: dict, deepnorm: dict) -> Finding:
    return about(computed(tmp_path, deepnet_runs(post, deepnorm), ["depth", "norm"]), WANG, "DeepNorm")


def test_deepnorm_diverging_at_the_shallow_depth_disagrees(tmp_path):
    assert deepnet(tmp_path, {2: 0.3, 8: 0.6}, {2: "diverged", 8: 0.3}).verdict == DISAGREES


def test_deepnorm_diverging_at_a_middle_depth_disagrees(tmp_path):
    assert deepnet(tmp_path, {2: 0.3, 8: 0.6, 16: 0.7}, {2: 0.3, 8: "diverged", 16: 0.3}).verdict == DISAGREES


def test_skips_failing_at_a_middle_depth_count_against_he(tmp_path):
    losses = {(2, False): 0.3, (2, True): 0.3, (8, False): 0.5, (8, True): "diverged", (16, False): 0.6,
              (16, True): 0.28}
    runs = [{"norm": "post", "depth": d, "residual": r, "seed": seed,
             **({"_status": "diverged"} if loss == "diverged" else {"_final_loss": loss})}
            for (d, r), loss in losses.items() for seed in (0, 1, 2)]
    finding = about(computed(tmp_path, runs, ["depth", "residual"]), HE, "deeper plain nets")
    assert finding.verdict == DISAGREES


def test_skips_failing_where_the_plain_net_fails_too_count_against_he(tmp_path):
    """Both diverged at depth 8: the skips did not train there (+0 %), and the seed is not dropped as unmeasurable."""
    losses = {(2, False): 0.3, (2, True): 0.3, (8, False): "diverged", (8, True): "diverged", (16, False): 0.6,
              (16, True): 0.28}
    runs = [{"norm": "post", "depth": d, "residual": r, "seed": seed,
             **({"_status": "diverged"} if loss == "diverged" else {"_final_loss": loss})}
            for (d, r), loss in losses.items() for seed in (0, 1, 2)]
    finding = about(computed(tmp_path, runs, ["depth", "residual"]), HE, "deeper plain nets")
    assert finding.verdict == DISAGREES and "not measurable" not in finding.value


def test_a_matched_setting_with_no_measurable_seed_leaves_the_verdict_open(tmp_path):
    """Every run with warmup failed at depth 8: that setting has 0 of the 3 seeds a verdict needs in every one."""
    runs = [{"norm": "post", "train.warmup": warmup, "seed": seed, "depth": depth,
             "_final_loss": 1.8 if warmup == 0 else 0.3, **({"_status": "failed"} if (depth, warmup) == (8, 5) else {})}
            for warmup in (0, 5) for seed in (0, 1, 2) for depth in (4, 8)]
    finding = about(computed(tmp_path, runs, ["train.warmup", "depth"]), XIONG, "warmup rescues")
    assert finding.verdict == INCONCLUSIVE and "too few seeds, 0 of 3, leans agrees" in finding.reason


def test_warmup_that_does_not_rescue_a_diverging_post_ln_disagrees(tmp_path):
    runs = [{**run, "_status": "diverged"} for run in warmup_runs({(w, s): 0.3 for w in (0, 5) for s in (0, 1, 2)})]
    finding = rescued(tmp_path, runs)
    assert finding.verdict == DISAGREES and "warmup did not rescue it" in finding.value


# ---------------------------------------------------------------------------------------------
# a value is judged as it is shown


@pytest.mark.parametrize("margin, effect, shown, verdict", [
    (Margin(1.5, 1.2, "×"), 0.3 / 0.2, "×1.5", AGREES),  # 1.4999999999999998
    (Margin(0.10, 0.02, "%"), 0.0204, "+2 %", DISAGREES),
    (Margin(0.05, 0.10, "%"), 0.0549, "+5 %", AGREES),
    (Margin(0.2, 0.4), 0.3996, "0.4", DISAGREES),  # an exponent gap
])
def test_a_value_on_the_edge_is_judged_as_shown(margin, effect, shown, verdict):
    assert margin.show(effect) == shown and margin.judge(effect) == verdict


def test_a_loss_shown_two_percent_above_is_judged_two_percent(tmp_path):
    finding = rescued(tmp_path, warmup_runs({(w, s): 0.3061 if w == 0 else 0.3 for w in (0, 5) for s in (0, 1, 2)}))
    assert "effect +2 %" in finding.value and finding.verdict == DISAGREES


# ---------------------------------------------------------------------------------------------
# counts and reasons


def test_unmeasurable_effects_beside_measured_ones_are_counted_not_called_within_the_margin(tmp_path):
    """Seeds 1 and 2 of post-LN with warmup failed (no final loss): one measured seed, at +500 %."""
    runs = warmup_runs({(w, s): 1.8 if w == 0 else 0.3 for w in (0, 5) for s in (0, 1, 2)})
    runs = [{**run, "_status": "failed"} if run["train.warmup"] == 5 and run["seed"] > 0 else run for run in runs]
    finding = rescued(tmp_path, runs)
    assert finding.verdict == INCONCLUSIVE and "within the margin" not in finding.value
    assert "1 seed" in finding.value and "2 of 3 not measurable" in finding.value


def test_units_count_only_the_seeds_that_measured():
    units = Units()
    for seed, effect in enumerate((20.0, np.nan, np.nan)):
        units.add(effect, "", seed)
    judged = part("", units, Margin(2.0, 0.5, "×"), "values")
    assert judged.n_seeds == 1 and judged.reason != "within the margin" and "leans agrees" in judged.reason


def test_step_zero_is_counted_once_across_a_key_that_only_shapes_training(tmp_path):
    runs = grid(norm=["post"], depth=[4], **{"train.warmup": [0, 50]}, **{"train.lr": [1e-3, 3e-3]})
    finding = about(computed(tmp_path, runs, ["norm", "train.warmup", "train.lr"]), XIONG, "post-LN's FFN")
    assert "1 matched setting" in finding.value and "1 seed × 8 draws" in finding.value


def test_a_draw_cut_off_before_its_last_block_is_not_measured_at_a_middle_block(tmp_path):
    """init_grad_norms.csv stops inside draw 7 (its block 7 never reached the disk): block 6 is not its last."""
    sweep = sweep_of(tmp_path, [{"norm": "post", "depth": 8, "seed": 0}])
    path = next(sweep.glob("*/init_grad_norms.csv"))
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-8]))  # block 7: 6 rows
    finding = about(findings.compute_findings(evidence(sweep)), XIONG, "post-LN's FFN")
    assert "1 seed × 7 draws" in finding.value and "1 of 8 not measurable" in finding.value


def test_a_run_that_took_no_step_has_no_end_to_judge(tmp_path):
    runs = [{"norm": "branch", "residual": r, "depth": 4, "train.steps": 0, "seed": s,
             "_init_ratio": 1.0 if r else 20.0} for r in (True, False) for s in (0, 1, 2)]
    finding = about(computed(tmp_path, runs, ["residual"]), SEED, "do not vanish")
    assert "at init" in finding.value and "at the end" not in finding.value
    untrained = [{**run, "train.steps": 0} for run in warmup_runs({(w, s): 0.3 for w in (0, 5) for s in (0, 1, 2)})]
    found = computed(tmp_path / "warmup", untrained, ["norm", "train.warmup"])
    assert not [f for f in found if "warmup" in f.claim]  # a final loss at step 0 is no training outcome


def test_the_rules_are_stated_before_any_data():
    assert (AT_INIT.unit, AT_INIT.minimum, AT_INIT.share) == ("draw", 8, 0.75)
    assert (TRAINED.unit, TRAINED.minimum, TRAINED.share) == ("seed", 3, 1.0)
    for claim in (findings.FIG3_POST, findings.EXPONENT_PRE, findings.STREAM, findings.RANK_DEPTH, findings.LIU_POST):
        assert claim.rule is AT_INIT
    for claim in (findings.WARMUP_POST, findings.DEEPNET, findings.REZERO, findings.CRITICAL_LR, findings.CONVERGENCE):
        assert claim.rule is TRAINED


# ---------------------------------------------------------------------------------------------
# lines a person can read


def test_each_terminal_line_fits_80_columns_and_wraps_between_words(tmp_path):
    runs = grid(depth=[2, 4, 8], norm=["post", "pre"], residual=[True, False], **{"train.warmup": [0, 5]})
    found = findings.compute_findings(evidence(sweep_of(tmp_path, runs, ["depth", "norm", "residual", "train.warmup"])))
    assert len(found) >= 8
    for finding in found:
        text = build.finding_text(finding, 80).plain
        lines = text.splitlines()
        assert all(len(line) <= 80 or " " not in line.strip() for line in lines), text
        assert " ".join(line.strip() for line in lines) == finding.line()  # every break at a space
        assert lines[0].startswith(f"  {finding.verdict} {finding.cite}: {finding.short}")
        if finding.verdict != INCONCLUSIVE:
            assert "Settle" not in text and len(lines) <= 2
        else:
            assert f"Settle: {finding.settle}" in " ".join(line.strip() for line in lines)


def test_report_md_keeps_the_full_statement(tmp_path):
    found = computed(tmp_path, warmup_runs({(w, s): 1.8 if w == 0 else 0.3 for w in (0, 5) for s in (0, 1, 2)}),
                     ["norm", "train.warmup"])
    finding = about(found, XIONG, "warmup rescues")
    text = finding.text()
    for piece in (finding.claim, finding.measured, finding.comparison, finding.margin, "(+500 %–+500 %)", "3 seeds"):
        assert piece in text


@pytest.mark.parametrize("copy_name", ["a-copy", "z-copy"])
def test_a_copied_run_counts_once_at_init_whatever_its_name(tmp_path, copy_name):
    sweep = sweep_of(tmp_path, [{"norm": "post", "depth": 4, "seed": seed, "_init_ratio": 2.0} for seed in (0, 1)],
                     ["norm"])
    shutil.copytree(sweep / "norm=post,seed=0", sweep / copy_name)
    finding = about(findings.compute_findings(evidence(sweep)), XIONG, "post-LN's FFN")
    assert finding.verdict == AGREES and "2 seeds × 8 draws" in finding.value


@pytest.mark.slow
def test_a_real_tiny_sweep_at_the_default_init_never_says_the_exponent_disagrees(tmp_path):
    """Through the real trainer, PyTorch's default init: the stream grows too little for −½ (δL/e² < 4), and the
    slope is near what the measured stream predicts: the exponent line may not read disagrees."""
    for depth in (2, 4, 8):
        api.train([f"depth={depth}", "norm=pre", "width=16", "heads=2", "train.steps=2", "task.seq_len=8",
                   "train.batch_size=4", "train.eval_every=2", "threads=1"], run_dir=tmp_path / f"depth={depth}")
    run_set = load.load([tmp_path])
    ev = Evidence.of(run_set, aggregate.per_run(run_set, aggregate.group_keys(run_set)))
    line = about(findings.compute_findings(ev), XIONG, "under pre-LN: it falls as")
    assert line.verdict != DISAGREES, line.text()
    assert "δL/e²" in line.line() and "stream predicts" in line.line()


def test_the_report_names_copies_under_warnings(tmp_path):
    sweep = sweep_of(tmp_path, [{"norm": "post", "depth": 2, "seed": 0}], ["norm"])
    shutil.copytree(sweep / "norm=post,seed=0", sweep / "copy")
    result = build_report([sweep])
    assert any("2 runs with the same config" in warning and "copy" in warning for warning in result.warnings)
    assert "2 runs with the same config" in result.report_md.read_text().split("## Warnings")[1]
