"""Findings are computed from the data: each one flips from agrees to disagrees when the synthetic data flip,
and is left out when its data are absent. Only load → per-run frame → findings: no plots, fast."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from report_fixtures import Knobs, grid, write_sweep

from resbench.report import aggregate, findings, load

SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}


def computed(tmp_path: Path, runs: list[dict], keys: list[str], knobs: Knobs | None = None) -> list[findings.Finding]:
    sweep = write_sweep(tmp_path / "sweep", [{**SMALL, **run} for run in runs], swept_keys=keys, knobs=knobs or Knobs())
    run_set = load.load([sweep])
    group_keys = aggregate.group_keys(run_set)
    return findings.compute_findings(aggregate.per_run(run_set, group_keys), group_keys)


def about(found: list[findings.Finding], source: str, claim_word: str) -> findings.Finding:
    matches = [f for f in found if f.source == source and claim_word in f.claim]
    assert len(matches) == 1, [f.text() for f in found]
    return matches[0]


@pytest.mark.parametrize("post_grows", [True, False])
def test_post_ln_gradient_ratio_follows_the_data(tmp_path, post_grows):
    found = computed(tmp_path, grid(depth=[2, 6], norm=["post", "pre"]), ["depth", "norm"], Knobs(post_grows=post_grows))
    post = about(found, "Xiong et al. 2020", "post-LN gradients")
    assert post.agrees is post_grows
    assert "depth 2:" in post.value and "depth 6:" in post.value
    assert about(found, "Xiong et al. 2020", "pre-LN gradients").agrees  # pre unchanged: stays flat


@pytest.mark.parametrize("helps", [True, False])
def test_warmup_for_post_ln_follows_the_data(tmp_path, helps):
    runs = grid(norm=["post", "pre"], **{"train.warmup": [0, 5]}, seed=[0, 1])
    found = computed(tmp_path, runs, ["norm", "train.warmup"], Knobs(warmup_helps_post=helps))
    assert about(found, "Xiong et al. 2020", "warmup rescues").agrees is helps
    assert about(found, "Xiong et al. 2020", "pre-LN trains without").agrees


def test_warmup_counts_diverged_runs_as_failures(tmp_path):
    runs = grid(norm=["post"], **{"train.warmup": [0, 5]}, seed=[0, 1])
    for run in runs:
        if run["train.warmup"] == 0:
            run["_status"] = "diverged"
    found = computed(tmp_path, runs, ["norm", "train.warmup"], Knobs(warmup_helps_post=False))
    finding = about(found, "Xiong et al. 2020", "warmup rescues")
    assert finding.agrees and "diverged without warmup: 2/2" in finding.value


@pytest.mark.parametrize("collapses", [True, False])
def test_rank_collapse_without_skips_follows_the_data(tmp_path, collapses):
    found = computed(tmp_path, grid(depth=[4], residual=[True, False]), ["residual"], Knobs(plain_collapses=collapses))
    assert about(found, "Dong et al. 2021", "lose rank").agrees is collapses


@pytest.mark.parametrize("degrades", [True, False])
def test_degradation_of_plain_nets_follows_the_data(tmp_path, degrades):
    runs = grid(depth=[2, 8], residual=[True, False])
    if not degrades:  # plain nets that get better with depth, and beat the residual ones
        for run in runs:
            run["_final_loss"] = (1.0 if run["residual"] else 0.9) - 0.05 * run["depth"]
    found = computed(tmp_path, runs, ["depth", "residual"])
    finding = about(found, "He et al. 2016", "deeper plain nets")
    assert finding.agrees is degrades


def test_plain_deep_mlp_on_digits_stuck_near_ln10(tmp_path):
    base = {"model": "mlp", "task": "digits", "residual": False, "norm": "none"}
    found = computed(tmp_path, [{**base, "depth": 12}], [])
    finding = about(found, "He et al. 2016", "ln 10")
    assert finding.agrees and f"{math.log(10):.3g}" in finding.value
    found = computed(tmp_path / "trained", [{**base, "depth": 12, "_final_loss": 0.4}], [])
    assert not about(found, "He et al. 2016", "ln 10").agrees
    shallow = computed(tmp_path / "shallow", [{**base, "depth": 3}], [])
    assert not [f for f in shallow if "ln 10" in f.claim]  # not deep: no claim to check


@pytest.mark.parametrize("deepnorm_loss, agrees", [(None, True), (2.0, False)])
def test_deepnorm_vs_post_at_the_largest_depth(tmp_path, deepnorm_loss, agrees):
    runs = grid(depth=[2, 6], norm=["post", "deepnorm"])
    for run in runs:
        if run["norm"] == "deepnorm" and deepnorm_loss is not None:
            run["_final_loss"] = deepnorm_loss
    finding = about(computed(tmp_path, runs, ["depth", "norm"]), "Wang et al. 2022", "DeepNorm")
    assert finding.agrees is agrees and "largest depth, 6" in finding.measured


@pytest.mark.parametrize("rezero_loss, agrees", [(None, True), (2.0, False)])
def test_rezero_vs_residual_runs(tmp_path, rezero_loss, agrees):
    runs = [{"norm": "none", "residual": "rezero"}, {"norm": "pre", "residual": True}, {"norm": "post", "residual": True}]
    runs = [{**run, "depth": 4, "seed": seed} for run in runs for seed in (0, 1)]
    for run in runs:
        if run["residual"] == "rezero" and rezero_loss is not None:
            run["_final_loss"] = rezero_loss
    finding = about(computed(tmp_path, runs, ["norm", "residual"]), "Bachlechner et al. 2020", "zero-initialised")
    assert finding.agrees is agrees and "norm=none" in finding.measured


@pytest.mark.parametrize("grows", [True, False])
def test_hidden_rms_growth_under_pre_ln_follows_the_data(tmp_path, grows):
    found = computed(tmp_path, grid(depth=[2, 8], norm=["post", "pre"]), ["depth", "norm"], Knobs(pre_rms_grows=grows))
    assert about(found, "Xiong et al. 2020", "pre-LN's residual stream").agrees is grows
    assert about(found, "Xiong et al. 2020", "post-LN's residual stream").agrees


def test_findings_without_their_data_are_left_out(tmp_path):
    found = computed(tmp_path, grid(depth=[4], norm=["pre"], seed=[0, 1]), ["norm"], Knobs(probes=False))
    claims = " ".join(f.claim for f in found)
    assert "post-LN" not in claims and "lose rank" not in claims and "warmup" not in claims
    assert "residual stream" not in claims and "DeepNorm" not in claims and "zero-initialised" not in claims


def test_finding_text_names_quantity_value_claim_and_verdict():
    finding = findings.Finding("Xiong et al. 2020", "a claim", "a quantity", "1.5", agrees=False)
    assert finding.text() == "disagrees with Xiong et al. 2020 (a claim): a quantity: 1.5."
