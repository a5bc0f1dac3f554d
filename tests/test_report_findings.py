"""Findings judged on synthetic run sets: for every finding a set where it must agree, one where it must
disagree and one where it must stay inconclusive, and a confounder per family (a key the claim is not
about differs: those runs are not compared). Only load → per-run frame → findings: no plots, fast."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import Knobs, grid, write_sweep

from resbench.report import aggregate, findings, load
from resbench.report.quantities import Evidence
from resbench.report.verdict import AGREES, DISAGREES, INCONCLUSIVE, Finding, Margin

SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}


def sweep_of(tmp_path: Path, runs: list[dict], keys: list[str] | None = None, knobs: Knobs | None = None,
             draws: int = 8) -> Path:
    """A synthetic sweep whose runs measured `draws` init draws each (0: none, as a run of older resbench)."""
    knobs = replace(knobs or Knobs(), draws=draws)
    return write_sweep(tmp_path / "sweep", [{**SMALL, **run} for run in runs], swept_keys=keys, knobs=knobs)


def evidence(sweep: Path) -> Evidence:
    run_set = load.load([sweep])
    return Evidence.of(run_set, aggregate.per_run(run_set, aggregate.group_keys(run_set)))


def computed(tmp_path: Path, runs: list[dict], keys: list[str] | None = None, knobs: Knobs | None = None,
             draws: int = 8) -> list[Finding]:
    return findings.compute_findings(evidence(sweep_of(tmp_path, runs, keys, knobs, draws)))


def about(found: list[Finding], source: str, words: str) -> Finding:
    matches = [f for f in found if f.source == source and words in f.claim + f.comparison]
    assert len(matches) == 1, [f.text() for f in found]
    return matches[0]


def none_about(found: list[Finding], source: str, words: str) -> bool:
    return not [f for f in found if f.source == source and words in f.claim + f.comparison]


def with_(runs: list[dict], when: dict, **settings: object) -> list[dict]:
    """`runs` with `settings` added to every run whose values match `when`."""
    return [{**run, **settings} if all(run.get(k) == v for k, v in when.items()) else run for run in runs]


XIONG, DONG, HE, WANG = "Xiong et al. 2020", "Dong et al. 2021", "He et al. 2016", "Wang et al. 2022"
LIU = "Liu et al. 2020"
REZERO, SEED, SIGNAL = "Bachlechner et al. 2020", "the seed article", "Glorot & Bengio 2010; Schoenholz et al. 2017"


# ---------------------------------------------------------------------------------------------
# the verdict model itself


def test_margins_cannot_agree_and_disagree_at_once():
    rising, flat = findings.FIG3_POST.margin, findings.FIG3_PRE.margin
    for ratio in np.linspace(0.5, 3, 26):
        verdicts = {rising.judge(ratio), flat.judge(ratio)}
        assert not (rising.judge(ratio) == AGREES and flat.judge(ratio) == AGREES), ratio
        assert verdicts <= {AGREES, DISAGREES, INCONCLUSIVE}
    assert Margin(2, 0.5).judge(1.0) == INCONCLUSIVE and Margin(2, 0.5).judge(float("nan")) == INCONCLUSIVE
    assert Margin(0.05, 0.10).judge(0.0) == AGREES and Margin(0.05, 0.10).judge(0.2) == DISAGREES


def test_finding_text_names_verdict_claim_quantity_values_and_margin():
    finding = Finding("Xiong et al. 2020", "a claim", "a quantity", "these runs", "agrees ≥ ×2", INCONCLUSIVE,
                      "1.5 vs 1", "resbench sweep --resume D seed=0,1,2")
    assert finding.text() == ("inconclusive with Xiong et al. 2020 (a claim): a quantity, these runs: 1.5 vs 1 "
                              "[agrees ≥ ×2]. To settle: `resbench sweep --resume D seed=0,1,2`.")
    assert not finding.agrees


# ---------------------------------------------------------------------------------------------
# Xiong et al. 2020


def fig3(tmp_path: Path, ratios: dict[tuple[str, int], float], draws: int = 8) -> list[Finding]:
    runs = [{"norm": norm, "depth": 4, "seed": seed, "_init_ratio": ratio} for (norm, seed), ratio in ratios.items()]
    return computed(tmp_path, runs, ["norm"], draws=draws)


@pytest.mark.parametrize("post, pre, verdicts", [
    (2.0, 0.8, (AGREES, AGREES)),
    (1.0, 2.0, (DISAGREES, DISAGREES)),
    (1.3, 1.3, (INCONCLUSIVE, INCONCLUSIVE)),  # one profile for both: it cannot agree with both
])
def test_fig3_post_rises_and_pre_stays_flat(tmp_path, post, pre, verdicts):
    found = fig3(tmp_path, {("post", 0): post, ("post", 1): post, ("pre", 0): pre, ("pre", 1): pre})
    rising, flat = about(found, XIONG, "post-LN's FFN"), about(found, XIONG, "pre-LN's FFN")
    assert (rising.verdict, flat.verdict) == verdicts
    assert "2 seeds × 8 draws, 1 matched setting" in rising.value


def test_fig3_seeds_that_split_are_inconclusive_and_name_the_settling_command(tmp_path):
    found = fig3(tmp_path, {("post", 0): 2.0, ("post", 1): 1.0})
    rising = about(found, XIONG, "post-LN's FFN")
    assert rising.verdict == INCONCLUSIVE and "split" in rising.value
    assert rising.settle == f"resbench sweep --resume {tmp_path / 'sweep'} seed=0,1,2"


@pytest.mark.parametrize("low_draws, verdict", [(2, AGREES), (3, INCONCLUSIVE)])
def test_fig3_needs_three_in_four_draws_beyond_the_margin(tmp_path, low_draws, verdict):
    """8 draws at ×2.0, of which `low_draws` fall to ×1.3 (within the margin): 6 of 8 clear it, 5 do not."""
    shapes = [{"_init_ratio": 1.3}] * low_draws + [{"_init_ratio": 2.0}] * (8 - low_draws)
    found = computed(tmp_path, [{"norm": "post", "depth": 4, "_draws": shapes}], ["norm"])
    rising = about(found, XIONG, "post-LN's FFN")
    assert rising.verdict == verdict and f"{8 - low_draws} of 8 ≥ ×1.5" in rising.value


def test_fig3_on_one_draw_is_inconclusive_and_leans(tmp_path):
    """A run of older resbench has its step 0 only: one draw, too few for a verdict at init."""
    found = fig3(tmp_path, {("post", 0): 2.0}, draws=0)
    rising = about(found, XIONG, "post-LN's FFN")
    assert rising.verdict == INCONCLUSIVE and "too few draws" in rising.value and "leans agrees" in rising.value
    assert "1 seed × 1 draw" in rising.line() and rising.settle.endswith("seed=0,1,2")


def test_fig3_reads_the_ffn_w2_gradient_not_the_whole_block(tmp_path):
    sweep = sweep_of(tmp_path, [{"norm": "post", "depth": 4, "_init_ratio": 2.0}], ["norm"])
    path = next(sweep.glob("*/init_grad_norms.csv"))
    rows = pd.read_csv(path)
    w2 = rows["param"].eq("ffn.fc2.weight")
    first = rows.loc[w2 & rows["layer"].eq(0)].set_index("draw")["grad_norm"]
    last = w2 & rows["layer"].eq(3)
    rows.loc[last, "grad_norm"] = rows.loc[last, "draw"].map(first)  # W₂ flat, while the block still rises ×2
    rows.to_csv(path, index=False)
    rising = about(findings.compute_findings(evidence(sweep)), XIONG, "post-LN's FFN")
    assert rising.verdict == DISAGREES and "×1" in rising.value


def exponent_runs(post: float, pre: float, depths=(2, 4, 8)) -> list[dict]:
    """Last-block W₂ gradient ∝ depth^exponent (flat profiles, so last = first = 0.5·depth^exponent)."""
    return [{"norm": norm, "depth": depth, "_init_ratio": 1.0, "_scale": depth ** exponent}
            for norm, exponent in (("post", post), ("pre", pre)) for depth in depths]


def exponent_lines(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.measured in (findings.EXPONENT.quantity, findings.EXPONENT_PRE.quantity)]


@pytest.mark.parametrize("post, pre, verdict", [(0.0, -0.5, AGREES), (-0.5, 0.1, DISAGREES), (0.25, -0.25, INCONCLUSIVE)])
def test_depth_exponent_against_theory(tmp_path, post, pre, verdict):
    """Pre-LN's stream here grows as √L (each block adds the variance it enters with): the premise holds, and
    the stream predicts −½."""
    lines = exponent_lines(computed(tmp_path, exponent_runs(post, pre), ["norm", "depth"]))
    assert [f.verdict for f in lines] == [verdict, verdict]
    assert "(theory 0)" in lines[0].value and "(theory -0.5)" in lines[1].value
    assert f"slope {pre:.3g} " in lines[1].value  # the fitted exponent, shown
    assert "the measured stream predicts -0.5" in lines[1].value


@pytest.mark.parametrize("pre, verdict", [(-0.06, INCONCLUSIVE), (0.4, DISAGREES)])
def test_pre_ln_exponent_is_judged_against_minus_half_only_where_the_stream_grows_as_l(tmp_path, pre, verdict):
    """Blocks adding 5 % of the input's variance each (δL/e² 0.42 at L = 8): the stream predicts about −0.09, not
    −½. A slope near the prediction is untested against −½ (premise not met); one far from both disagrees."""
    runs = [{**run, "_rms_per_block": 0.05} if run["norm"] == "pre" else run for run in exponent_runs(0.0, pre)]
    pre_line = exponent_lines(computed(tmp_path, runs, ["norm", "depth"]))[1]
    assert pre_line.verdict == verdict and "δL/e² 0.421" in pre_line.line()
    assert "stream predicts -0.09" in pre_line.line()
    if verdict == INCONCLUSIVE:
        assert "premise not met" in pre_line.value and "init=xavier" in pre_line.settle


def test_pre_ln_exponent_against_minus_half_in_the_settings_that_meet_its_premise(tmp_path):
    """After the settling run (`init=xavier`) a sweep holds both inits: the setting that meets the premise is judged
    against −½, the other only against its stream, and the line says one setting was left untested."""
    arms = (("pytorch", -0.06, 0.05), ("xavier", -0.5, 1.0))  # (init, slope, variance each block adds)
    runs = [{"norm": "pre", "depth": depth, "init": init, "_init_ratio": 1.0, "_scale": depth ** slope,
             "_rms_per_block": per_block} for init, slope, per_block in arms for depth in (2, 4, 8)]
    line = exponent_lines(computed(tmp_path, runs, ["init", "depth"]))[0]
    assert line.verdict == AGREES and "1 matched setting(s) below the premise" in line.value


def test_depth_exponent_needs_three_depths(tmp_path):
    line = exponent_lines(computed(tmp_path, exponent_runs(0.0, -0.5, depths=(2, 4)), ["norm", "depth"]))[0]
    assert line.verdict == INCONCLUSIVE and "depth=2,4,8" in line.settle


def test_exponent_plot_draws_measured_fitted_and_theory_lines(tmp_path):
    curves = findings.exponent_curves(evidence(sweep_of(tmp_path, exponent_runs(0.0, -0.5), ["norm", "depth"])))
    pre = curves[curves["panel"].eq("pre-LN")]
    assert set(pre["line"]) == {"measured (median over seeds and draws)", "fit: slope -0.50", "theory: slope -0.5"}
    theory = pre[pre["line"].str.startswith("theory")].sort_values("x")
    slope = np.polyfit(np.log(theory["x"]), np.log(theory["y"]), 1)[0]
    assert slope == pytest.approx(-0.5)


def warmup_runs(**loss: float) -> list[dict]:
    """post and pre, warmup 0 and 5, three seeds; `loss` = {"post_0": final loss of post without warmup, …}."""
    runs = grid(norm=["post", "pre"], **{"train.warmup": [0, 5]}, seed=[0, 1, 2])
    for run in runs:
        key = f"{run['norm']}_{run['train.warmup']}"
        if key in loss:
            run["_final_loss"] = loss[key]
    return runs


@pytest.mark.parametrize("loss, post_verdict, pre_verdict", [
    ({"post_0": 1.8, "post_5": 0.3, "pre_0": 0.3, "pre_5": 0.3}, AGREES, AGREES),
    ({"post_0": 0.3, "post_5": 0.3, "pre_0": 1.5, "pre_5": 0.3}, DISAGREES, DISAGREES),
    ({"post_0": 0.315, "post_5": 0.3, "pre_0": 0.32, "pre_5": 0.3}, INCONCLUSIVE, INCONCLUSIVE),
])
def test_warmup_post_ln_needs_it_pre_ln_does_not(tmp_path, loss, post_verdict, pre_verdict):
    found = computed(tmp_path, warmup_runs(**loss), ["norm", "train.warmup"])
    assert about(found, XIONG, "warmup rescues").verdict == post_verdict
    assert about(found, XIONG, "pre-LN trains without").verdict == pre_verdict


def test_warmup_counts_diverged_runs_as_failures(tmp_path):
    runs = with_(warmup_runs(post_5=0.3), {"norm": "post", "train.warmup": 0}, _status="diverged")
    finding = about(computed(tmp_path, runs, ["norm", "train.warmup"]), XIONG, "warmup rescues")
    assert finding.verdict == AGREES and "diverged without warmup: 3/3, with: 0/3" in finding.value


def test_confounder_warmup_runs_at_another_lr_are_not_compared(tmp_path):
    runs = with_(warmup_runs(post_0=1.8, post_5=0.3), {"train.warmup": 0}, **{"train.lr": 0.01})
    finding = about(computed(tmp_path, runs, ["norm", "train.warmup", "train.lr"]), XIONG, "warmup rescues")
    assert finding.verdict == INCONCLUSIVE and "no matched runs" in finding.value


@pytest.mark.parametrize("deep_per_block, verdict", [(1.0, AGREES), (4.0, DISAGREES), (0.0, DISAGREES),
                                                     (2.0, INCONCLUSIVE)])  # ×1.37 of the prediction
def test_pre_ln_stream_grows_as_its_increments_predict(tmp_path, deep_per_block, verdict):
    """Shallow run: each block adds variance 1 (rms² = 1 + l); the deeper one adds `deep_per_block`."""
    runs = [{"norm": "pre", "depth": 2, "_rms_per_block": 1.0}, {"norm": "pre", "depth": 8, "_rms_per_block": deep_per_block}]
    finding = about(computed(tmp_path, runs, ["depth"]), XIONG, "residual stream")
    assert finding.verdict == verdict
    assert "2.83" in finding.value  # the prediction at depth 8: √(0 + 1·8)


def test_pre_ln_stream_judged_only_where_the_prediction_grows_visibly(tmp_path):
    """Depth 3's prediction (√3) is only ×1.22 above the shallowest run's √2: no test, whatever it measures."""
    runs = [{"norm": "pre", "depth": 2, "_rms_per_block": 1.0}, {"norm": "pre", "depth": 3, "_rms_per_block": 4.0},
            {"norm": "pre", "depth": 8, "_rms_per_block": 1.0}]
    assert about(computed(tmp_path, runs, ["depth"]), XIONG, "residual stream").verdict == AGREES


def test_pre_ln_stream_premise_is_judged_per_matched_setting(tmp_path):
    """After the settling run (`init=xavier`) a sweep holds both inits: the stream is judged where its prediction
    grows (xavier), and the setting below the premise (pytorch) is counted as untested, not pooled with it."""
    arms = (("pytorch", 0.05), ("xavier", 1.0))  # (init, variance each block adds)
    runs = [{"norm": "pre", "depth": depth, "init": init, "_rms_per_block": per_block}
            for init, per_block in arms for depth in (2, 8)]
    finding = about(computed(tmp_path, runs, ["init", "depth"]), XIONG, "residual stream")
    assert finding.verdict == AGREES, finding.value
    assert "1 matched setting(s) below the premise, untested" in finding.value
    assert "2.83" in finding.value  # the shown prediction is xavier's alone: √(0 + 1·8)


def test_pre_ln_stream_without_growth_is_untested(tmp_path):
    found = computed(tmp_path, grid(norm=["pre", "post"], depth=[2, 8]), ["norm", "depth"], Knobs(pre_rms_grows=False))
    finding = about(found, XIONG, "residual stream")
    assert finding.verdict == INCONCLUSIVE and "premise not met" in finding.value
    assert not [f for f in found if "post-LN's residual stream" in f.claim]  # constant by construction: no finding


def lr_runs(post_trains: list[float], pre_trains: list[float], lrs=(1e-3, 3e-3, 1e-2)) -> list[dict]:
    runs = []
    for norm, trains in (("post", post_trains), ("pre", pre_trains)):
        for lr in lrs:
            status = {} if lr in trains else {"_status": "diverged"}
            runs += [{"norm": norm, "train.lr": lr, "train.warmup": 0, "seed": seed, "_final_loss": 0.3, **status}
                     for seed in (0, 1, 2)]
    return runs


@pytest.mark.parametrize("post, pre, verdict", [
    ([1e-3], [1e-3, 3e-3, 1e-2], AGREES),
    ([1e-3, 3e-3, 1e-2], [1e-3], DISAGREES),
    ([1e-3, 3e-3, 1e-2], [1e-3, 3e-3, 1e-2], INCONCLUSIVE),
])
def test_critical_learning_rate_pre_vs_post(tmp_path, post, pre, verdict):
    finding = about(computed(tmp_path, lr_runs(post, pre), ["norm", "train.lr"]), XIONG, "larger learning rates")
    assert finding.verdict == verdict
    if verdict == INCONCLUSIVE:  # both trained at the largest lr tried: a larger one would settle it
        assert "≥ 0.01" in finding.value and "train.lr=0.001,0.003,0.01,0.03" in finding.settle


def test_critical_learning_rate_ignores_a_loss_far_from_the_best(tmp_path):
    runs = lr_runs([1e-3, 3e-3, 1e-2], [1e-3, 3e-3, 1e-2])
    runs = with_(runs, {"norm": "post", "train.lr": 1e-2}, _final_loss=2.0)  # finite but not trained
    runs = with_(runs, {"norm": "post", "train.lr": 3e-3}, _final_loss=0.5)
    finding = about(computed(tmp_path, runs, ["norm", "train.lr"]), XIONG, "larger learning rates")
    assert finding.verdict == AGREES and "post-LN: 0.001" in finding.value


def test_a_stack_that_stalls_at_every_lr_has_no_critical_lr(tmp_path):
    runs = with_(lr_runs([1e-3, 3e-3, 1e-2], [1e-3, 3e-3, 1e-2]), {"norm": "post"}, _final_loss=1.0)
    finding = about(computed(tmp_path, runs, ["norm", "train.lr"]), XIONG, "larger learning rates")
    assert finding.verdict == AGREES and "post-LN: none trained" in finding.value


def test_confounder_critical_lr_at_another_width_is_not_compared(tmp_path):
    runs = with_(lr_runs([1e-3], [1e-3, 3e-3, 1e-2]), {"norm": "pre"}, width=16)
    assert none_about(computed(tmp_path, runs, ["norm", "train.lr", "width"]), XIONG, "larger learning rates")


# ---------------------------------------------------------------------------------------------
# Dong et al. 2021


def dong_runs(**settings: object) -> list[dict]:
    return [{**run, "model.ffn_mult": 0, **settings} for run in grid(depth=[2, 6], residual=[True, False])]


@pytest.mark.parametrize("knobs, plain, verdict", [
    (Knobs(), {}, AGREES),
    (Knobs(plain_collapses=False), {}, DISAGREES),
    (Knobs(), {"_rank_decay": 0.9}, INCONCLUSIVE),  # 0.9 per block: ×0.66 over 4 blocks, ×0.71 vs skips
])
def test_rank_collapse_of_pure_attention(tmp_path, knobs, plain, verdict):
    runs = with_(dong_runs(), {"residual": False}, **plain)
    found = computed(tmp_path, runs, ["depth", "residual"], knobs)
    assert about(found, DONG, "loses rank with depth").verdict == verdict
    assert about(found, DONG, "prevent").verdict == verdict


def test_rank_collapse_reports_the_rate_per_block_it_measured(tmp_path):
    """A constant factor per block (0.5) is a single exponential: the line says so, and never claims the paper's
    doubly exponential rate; a fall ever faster down the stack (0.9^(2^l)) reads as doubly exponential."""
    found = computed(tmp_path, dong_runs(), ["depth", "residual"])
    line = about(found, DONG, "loses rank with depth")
    assert "×0.5 per block" in line.value and "single-exponential" in line.value and "×0.5/block" in line.line()
    ev = evidence(sweep_of(tmp_path / "doubly", dong_runs(), ["depth", "residual"]))
    layers = ev.init_draw_layers
    deep_plain = layers["run"].isin(ev.runs.loc[ev.runs["residual"].eq("false") & ev.runs["depth"].eq(6), "run"])
    layers.loc[deep_plain, "rank_residual"] = 0.9 ** (2.0 ** layers.loc[deep_plain, "layer"])
    doubly = about(findings.compute_findings(ev), DONG, "loses rank with depth")
    assert "ever faster" in doubly.value and "single-exponential" not in doubly.value


def test_rank_collapse_needs_attention_only_runs(tmp_path):
    found = computed(tmp_path, grid(depth=[2, 6], residual=[True, False]), ["depth", "residual"])
    assert none_about(found, DONG, "rank")


def test_confounder_rank_without_skips_at_another_width_is_not_compared(tmp_path):
    runs = with_(dong_runs(), {"residual": False}, width=16)
    finding = about(computed(tmp_path, runs, ["depth", "residual", "width"]), DONG, "prevent")
    assert finding.verdict == INCONCLUSIVE and "no matched runs" in finding.value


# ---------------------------------------------------------------------------------------------
# He et al. 2016 and signal propagation


def he_runs(deep_plain: float, deep_skips: float = 0.28, shallow_plain: float = 0.3) -> list[dict]:
    losses = {(2, False): shallow_plain, (2, True): 0.3, (8, False): deep_plain, (8, True): deep_skips}
    return [{"norm": "post", "depth": d, "residual": r, "seed": seed, "_final_loss": loss}
            for (d, r), loss in losses.items() for seed in (0, 1, 2)]


@pytest.mark.parametrize("deep_plain, shallow_plain, verdict", [
    (0.5, 0.3, AGREES),
    (0.3, 0.3, DISAGREES),  # deeper plain net no worse
    (0.32, 0.3, INCONCLUSIVE),  # +7 %: within the margin
    (0.9, 0.6, INCONCLUSIVE),  # the shallow plain net itself does not train: nothing to degrade from
])
def test_degradation_of_normalized_plain_nets(tmp_path, deep_plain, shallow_plain, verdict):
    finding = about(computed(tmp_path, he_runs(deep_plain, shallow_plain=shallow_plain), ["depth", "residual"]),
                    HE, "deeper plain nets")
    assert finding.verdict == verdict


def test_degradation_is_about_normalized_nets(tmp_path):
    runs = [{**run, "norm": "none"} for run in he_runs(0.5)]
    assert none_about(computed(tmp_path, runs, ["depth", "residual"]), HE, "deeper plain nets")


def test_confounder_deep_plain_net_at_another_lr_is_not_compared(tmp_path):
    runs = with_(he_runs(0.5), {"depth": 8, "residual": False}, **{"train.lr": 0.01})
    finding = about(computed(tmp_path, runs, ["depth", "residual", "train.lr"]), HE, "deeper plain nets")
    assert finding.verdict == INCONCLUSIVE


@pytest.mark.parametrize("settings, verdict", [
    ({}, AGREES),  # rank 0.8·0.5^12 ≈ 2e-4 across examples, loss ln 10
    ({"_rank_decay": 1.0, "_final_loss": 0.4}, DISAGREES),
    ({"_rank_decay": (0.05 / 0.8) ** (1 / 12)}, INCONCLUSIVE),  # spread 0.05: between the margins
])
def test_deep_plain_mlp_loses_its_forward_signal(tmp_path, settings, verdict):
    base = {"model": "mlp", "task": "digits", "residual": False, "norm": "none", "depth": 12}
    finding = about(computed(tmp_path, [{**base, **settings, "seed": seed} for seed in (0, 1, 2)], []), SIGNAL,
                    "forward signal")
    assert finding.verdict == verdict and f"{math.log(10):.3f}" in finding.value
    assert none_about(computed(tmp_path / "shallow", [{**base, "depth": 3}], []), SIGNAL, "forward signal")


# ---------------------------------------------------------------------------------------------
# Wang et al. 2022


def deepnet_runs(post: tuple[float, float], deepnorm: tuple[float, float]) -> list[dict]:
    return [{"norm": norm, "depth": depth, "seed": seed, "_final_loss": loss}
            for norm, losses in (("post", post), ("deepnorm", deepnorm)) for depth, loss in zip((2, 8), losses)
            for seed in (0, 1, 2)]


@pytest.mark.parametrize("post, deepnorm, verdict", [
    ((0.3, 0.6), (0.3, 0.3), AGREES),
    ((0.3, 0.6), (0.3, 0.6), DISAGREES),
    ((0.3, 0.3), (0.3, 0.3), INCONCLUSIVE),  # post-LN trains fine deep: the claim is not tested
])
def test_deepnorm_where_post_ln_struggles(tmp_path, post, deepnorm, verdict):
    finding = about(computed(tmp_path, deepnet_runs(post, deepnorm), ["depth", "norm"]), WANG, "DeepNorm")
    assert finding.verdict == verdict
    if verdict == INCONCLUSIVE:
        assert "premise not met" in finding.value and "depth=2,8,16" in finding.settle


def test_deepnorm_counts_a_diverged_deep_post_ln_as_struggling(tmp_path):
    runs = with_(deepnet_runs((0.3, 0.3), (0.3, 0.3)), {"norm": "post", "depth": 8}, _status="diverged")
    assert about(computed(tmp_path, runs, ["depth", "norm"]), WANG, "DeepNorm").verdict == AGREES


def test_confounder_deep_runs_trained_longer_are_not_compared(tmp_path):
    runs = with_(deepnet_runs((0.3, 0.6), (0.3, 0.3)), {"depth": 8}, **{"train.steps": 40})
    finding = about(computed(tmp_path, runs, ["depth", "norm", "train.steps"]), WANG, "DeepNorm")
    assert finding.verdict == INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# Bachlechner et al. 2020 and the seed article: convergence speed and vanishing gradients


def rezero_runs(rezero_speed: float, pre_speed: float = 1.0, post_speed: float = 1.0) -> list[dict]:
    arms = (("none", "rezero", rezero_speed), ("pre", True, pre_speed), ("post", True, post_speed))
    return [{"norm": norm, "residual": residual, "depth": 4, "seed": seed, "train.warmup": 5, "_final_loss": 0.3,
             "_speed": speed} for norm, residual, speed in arms for seed in (0, 1, 2)]


@pytest.mark.parametrize("speed, verdict", [(3.0, AGREES), (0.3, DISAGREES), (1.0, INCONCLUSIVE)])
def test_rezero_against_pre_and_post_by_convergence_speed(tmp_path, speed, verdict):
    found = computed(tmp_path, rezero_runs(speed), ["norm", "residual"])
    for norm in ("pre", "post"):
        finding = about(found, REZERO, f"norm={norm},")
        assert finding.verdict == verdict and "steps to the target" in finding.value


def test_rezero_is_judged_against_each_norm_not_a_pool(tmp_path):
    """Faster than post-LN but slower than pre-LN: one agrees, one disagrees (no pooled median)."""
    found = computed(tmp_path, rezero_runs(1.0, pre_speed=3.0, post_speed=0.3), ["norm", "residual"])
    assert about(found, REZERO, "norm=pre,").verdict == DISAGREES
    assert about(found, REZERO, "norm=post,").verdict == AGREES


def test_confounder_rezero_against_other_depths_is_not_compared(tmp_path):
    runs = with_(rezero_runs(3.0), {"residual": True}, depth=8)
    for norm in ("pre", "post"):
        finding = about(computed(tmp_path / norm, runs, ["norm", "residual", "depth"]), REZERO, f"norm={norm},")
        assert finding.verdict == INCONCLUSIVE and "no matched runs" in finding.value


@pytest.mark.parametrize("plain_ratio, verdict", [(20.0, AGREES), (0.1, DISAGREES), (1.5, INCONCLUSIVE)])
def test_seed_article_skips_stop_gradients_vanishing_for_any_norm(tmp_path, plain_ratio, verdict):
    runs = [{"norm": "branch", "residual": residual, "depth": 4, "seed": seed, "_init_ratio": 1.0 if residual else
             plain_ratio} for residual in (True, False) for seed in (0, 1, 2)]
    finding = about(computed(tmp_path, runs, ["residual"]), SEED, "do not vanish")
    assert finding.verdict == verdict and "at init" in finding.value and "at the end" in finding.value


@pytest.mark.parametrize("speed, verdict", [(3.0, AGREES), (0.3, DISAGREES), (1.0, INCONCLUSIVE)])
def test_seed_article_normalization_speeds_convergence_for_any_norm(tmp_path, speed, verdict):
    runs = [{"norm": norm, "residual": True, "depth": 4, "seed": seed, "_speed": speed if norm == "branch" else 1.0,
             "_final_loss": 0.3} for norm in ("branch", "none") for seed in (0, 1, 2)]
    finding = about(computed(tmp_path, runs, ["norm"]), SEED, "norm=branch vs norm=none")
    assert finding.verdict == verdict
    assert "3 seeds" in finding.value and "–" in finding.value  # ≥ 3 seeds: the spread is shown


def test_seed_article_on_the_case_study_grid(tmp_path):
    """Plain (none, false) vs the article's block (branch, true) vs pre-LN, 3 seeds: the block findings judge
    it; the one-variable findings have no matched pair and are left out."""
    arms = (("none", False, 1.0, 20.0), ("branch", True, 3.0, 1.0), ("pre", True, 3.0, 0.8))
    runs = [{"model": "mlp", "task": "digits", "norm": norm, "residual": residual, "depth": depth, "seed": seed,
             "_speed": speed, "_init_ratio": ratio, "_final_loss": 0.3}
            for norm, residual, speed, ratio in arms for depth in (2, 10) for seed in (0, 1, 2)]
    found = computed(tmp_path, runs, ["norm", "residual", "depth"])
    for norm in ("branch", "pre"):
        block = [f for f in found if f.source == SEED and f"norm={norm} residual=true vs the plain" in f.comparison]
        assert {f.claim for f in block} == {findings.BLOCK_VANISHING.claim, findings.BLOCK_CONVERGENCE.claim}
        assert [f.verdict for f in block] == [AGREES, AGREES], [f.text() for f in block]
    assert none_about(found, SEED, "do not vanish") and none_about(found, SEED, "speeds up")


@pytest.mark.parametrize("block_speed, plain_ratio, verdict", [
    (3.0, 20.0, AGREES), (0.3, 0.1, DISAGREES), (1.0, 1.5, INCONCLUSIVE)])
def test_seed_article_block_against_the_plain_net(tmp_path, block_speed, plain_ratio, verdict):
    arms = (("none", False, 1.0, plain_ratio), ("branch", True, block_speed, 1.0))
    runs = [{"norm": norm, "residual": residual, "depth": 4, "seed": seed, "_speed": speed, "_init_ratio": ratio,
             "_final_loss": 0.3} for norm, residual, speed, ratio in arms for seed in (0, 1, 2)]
    block = [f for f in computed(tmp_path, runs, ["norm", "residual"]) if "vs the plain net" in f.comparison]
    assert [f.verdict for f in block] == [verdict, verdict], [f.text() for f in block]


def test_confounder_skips_at_another_width_are_not_compared(tmp_path):
    runs = [{"norm": "branch", "residual": True, "depth": 4, "width": 16},
            {"norm": "branch", "residual": False, "depth": 4, "width": 8}]
    found = computed(tmp_path, runs, ["residual", "width"])
    assert none_about(found, SEED, "do not vanish")


# ---------------------------------------------------------------------------------------------
# Liu et al. 2020


def seq2seq_evidence(tmp_path: Path, decoder_factor: dict[str, float]) -> Evidence:
    """Post- and pre-LN encoder–decoders, 2 seeds, 8 draws: both stacks with the fixture's profile, the decoder's
    first block times `decoder_factor[norm]` (so the decoder's first/last over the encoder's is that factor)."""
    runs = [{"task": "reverse", "norm": norm, "depth": 4, "seed": seed} for norm in ("post", "pre") for seed in (0, 1)]
    ev = evidence(sweep_of(tmp_path, runs, ["norm"]))
    layers, norm = ev.init_draw_layers, ev.runs.set_index("run")["norm"]
    factor = layers["run"].map(norm).map(decoder_factor).where(layers["layer"].eq(0), 1.0)
    decoder = layers.assign(stack="decoder", grad_norm=layers["grad_norm"] * factor)
    return replace(ev, runs=ev.runs.assign(**{"model.name": "seq2seq"}),
                   init_draw_layers=pd.concat([layers.assign(stack="encoder"), decoder], ignore_index=True))


@pytest.mark.parametrize("post, pre, verdict", [(0.3, 1.0, AGREES), (1.0, 0.3, DISAGREES), (0.65, 0.65, INCONCLUSIVE)])
def test_liu_post_ln_decoder_gradients_vanish_where_the_encoders_do_not(tmp_path, post, pre, verdict):
    found = findings.compute_findings(seq2seq_evidence(tmp_path, {"post": post, "pre": pre}))
    vanish, neither = about(found, LIU, "post-LN the decoder"), about(found, LIU, "pre-LN neither")
    assert (vanish.verdict, neither.verdict) == (verdict, verdict)
    assert f"×{post:g}" in vanish.line() and "2 seeds × 8 draws" in vanish.line()


def test_liu_needs_an_encoder_decoder(tmp_path):
    assert none_about(computed(tmp_path, grid(norm=["post", "pre"]), ["norm"]), LIU, "decoder")


# ---------------------------------------------------------------------------------------------
# absent data


def test_findings_without_their_data_are_left_out(tmp_path):
    found = computed(tmp_path, grid(depth=[4], norm=["pre"], seed=[0, 1]), ["norm"], Knobs(probes=False))
    claims = " ".join(f.claim for f in found)
    assert "post-LN" not in claims and "lose" not in claims and "warmup" not in claims
    assert "residual stream" not in claims and "DeepNorm" not in claims and "zero-initialised" not in claims
