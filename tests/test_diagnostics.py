"""The off-policy readings (sims.integrations.diagnostics): hand values, verl's definitions, the derived thresholds.

The hand-worked batches have exact answers; the equality with verl calls the installed
verl's ``compute_offpolicy_metrics`` and ``compute_is_metrics`` (skipped without verl; CI
installs it). The threshold tests check each threshold that docs/diagnostics.md derives,
by a route that does not use the readings' code where one exists.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sims.integrations.diagnostics import (
    OFFPOLICY_READINGS,
    SUMS,
    batch_sums,
    clip_k3_threshold,
    offpolicy_readings,
    predicts_eta,
    reading_names,
    readings,
    temperature,
)
from sims.integrations.eta import fitted_eta, group_regime, lambert_eta
from theory.bandits import Bandit
from theory.lambert import lambert_stationary_points
from theory.losses import m2po_mask
from theory.objectives import OBJECTIVES, make_objective
from theory.recipes import runs_as_zoo_loss
from theory.zoo import BUILTIN_SPECS

ROOT = Path(__file__).resolve().parents[1]
LN2 = math.log(2.0)


def tiny_batch():
    """Two rows: log-ratios (ln 2, 0) and (-ln 2, padding); advantages 0.3 and -0.1 per sequence."""
    logp_mu = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], dtype=torch.float64)
    r = torch.tensor([[LN2, 0.0], [-LN2, 7.0]], dtype=torch.float64)  # 7.0 sits under the mask
    mask = torch.tensor([[True, True], [True, False]])
    return logp_mu + r, logp_mu, mask, torch.tensor([0.3, -0.1], dtype=torch.float64)


def ragged(seed, B=6, T=9, spread=0.5, empty_row=False):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0] = T
    if empty_row:
        lens[1] = 0
    mask = torch.arange(T)[None] < lens[:, None]
    lm = torch.randn(B, T, generator=g, dtype=torch.float64) * 0.5 - 1.5
    lp = lm + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return lp, lm, mask, adv


# ---------------------------------------------------------------------------
# hand-worked values
# ---------------------------------------------------------------------------


def test_hand_values_of_a_tiny_batch():
    """Tokens r = (ln 2, 0, -ln 2): w = (2, 1, 1/2); sequences s = (ln 2, -ln 2): W = (2, 1/2).

    kl = 0; k3 = ((1 - ln 2) + 0 + (ln 2 - 1/2)) / 3 = 1/6; chi2_token = (4 + 1 + 1/4)/3 - 1 = 3/4;
    ess = (7/6)^2 / (7/4) = 7/9; chi2_seq = (4 + 1/4)/2 - 1 = 9/8; ess_seq = (5/4)^2 / (17/8) = 25/34.
    Sequence level: kl_mu_pi = 0, adv_over_beta = 0.1/0.1 = 1, eta_fit = 1. Token level (A = 0.3, 0.3, -0.1):
    adv_over_beta = (0.5/3)/0.1 = 5/3 = eta_fit.
    """
    lp, lm, mask, adv = tiny_batch()
    out = offpolicy_readings(lp, lm, mask, adv, beta=0.1, level="sequence")
    expect = {"kl": 0.0, "k3_kl": 1 / 6, "chi2_token": 0.75, "chi2_seq": 9 / 8, "ess": 7 / 9, "ess_seq": 25 / 34,
              "kl_mu_pi": 0.0, "adv_over_beta": 1.0, "eta_fit": 1.0}
    assert list(out) == list(expect)
    for k, v in expect.items():
        assert out[k] == pytest.approx(v, rel=1e-14, abs=1e-15), k
    tok = offpolicy_readings(lp, lm, mask, adv, beta=0.1, level="token")
    assert list(tok) == list(OFFPOLICY_READINGS) + ["adv_over_beta", "eta_fit"]
    assert tok["adv_over_beta"] == pytest.approx(5 / 3, rel=1e-14) and tok["eta_fit"] == pytest.approx(5 / 3, rel=1e-14)
    # per-token advantages give the same sums as the per-sequence ones they broadcast
    tok2 = offpolicy_readings(lp, lm, mask, adv[:, None] * mask, beta=0.1, level="token")
    assert tok2 == pytest.approx(tok, rel=1e-14)
    assert list(offpolicy_readings(lp, lm, mask)) == list(OFFPOLICY_READINGS)  # no temperature: no eta


def test_on_policy_batch_reads_zero_gap():
    lp, _, mask, adv = ragged(0)
    out = offpolicy_readings(lp, lp, mask, adv, beta=0.5)
    assert out["kl"] == out["k3_kl"] == out["chi2_token"] == out["chi2_seq"] == out["kl_mu_pi"] == 0.0
    assert out["ess"] == out["ess_seq"] == 1.0
    assert out["eta_fit"] == pytest.approx(out["adv_over_beta"], abs=0) and out["adv_over_beta"] == pytest.approx(
        float(adv.mean()) / 0.5, rel=1e-14)


def test_sums_pool_over_batches_and_ranks():
    """Adding the sums of two halves gives the readings of the whole batch (data-parallel ranks)."""
    lp, lm, mask, adv = ragged(1, B=8, empty_row=True)
    whole = offpolicy_readings(lp, lm, mask, adv, beta=0.2)
    halves = batch_sums(lp[:3], lm[:3], mask[:3], adv[:3]) + batch_sums(lp[3:], lm[3:], mask[3:], adv[3:])
    assert readings(halves, 0.2) == pytest.approx(whole, rel=1e-13)
    assert batch_sums(lp, lm, mask, adv).shape == (len(SUMS),)


def test_eta_fit_is_the_pooled_fitted_eta():
    lp, lm, mask, adv = ragged(2, empty_row=True)
    s = ((lp - lm) * mask).sum(-1)
    valid = mask.any(-1)
    out = offpolicy_readings(lp, lm, mask, adv, beta=0.1)
    assert out["eta_fit"] == pytest.approx(float(fitted_eta(s[valid], adv[valid], 0.1)), rel=1e-13)


def test_empty_batch_reads_nan_and_bad_inputs_are_refused():
    lp, lm, mask, adv = ragged(3)
    out = offpolicy_readings(lp, lm, torch.zeros_like(mask), adv, beta=0.1)
    assert all(math.isnan(v) for v in out.values())
    with pytest.raises(ValueError, match="shape"):
        batch_sums(lp, lm[:, :-1], mask)
    with pytest.raises(ValueError, match="mask"):
        batch_sums(lp, lm, mask[:, :-1])
    with pytest.raises(ValueError, match="adv"):
        batch_sums(lp, lm, mask, adv[:-1])
    with pytest.raises(ValueError, match="beta"):
        readings(batch_sums(lp, lm, mask, adv), beta=0.0)
    with pytest.raises(ValueError, match="need adv"):
        offpolicy_readings(lp, lm, mask, beta=0.1)
    with pytest.raises(ValueError, match="level"):
        readings(batch_sums(lp, lm, mask), level="group")


# ---------------------------------------------------------------------------
# verl's definitions (the installed verl's own functions)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spread", [0.05, 0.5, 2.0])
def test_shared_readings_equal_verls_compute_offpolicy_metrics(spread):
    """kl, k3_kl, chi2_token, chi2_seq are verl's rollout_corr definitions with (training, rollout) = (pi, mu)."""
    pytest.importorskip("verl")
    from verl.trainer.ppo.rollout_corr_helper import (
        compute_offpolicy_metrics,
        compute_rollout_corr_metrics_from_logprobs,
    )

    for seed in range(4):
        lp, lm, mask, _ = ragged(seed, spread=spread)
        ours = offpolicy_readings(lp, lm, mask)
        theirs = compute_offpolicy_metrics(old_log_prob=lp, rollout_log_prob=lm, response_mask=mask)
        bypass = compute_rollout_corr_metrics_from_logprobs(lp, lm, mask)  # verl's actor-side form (bypass mode)
        for k in ("kl", "k3_kl", "chi2_token", "chi2_seq"):
            assert ours[k] == pytest.approx(theirs[k], rel=1e-9, abs=1e-12), (k, spread, seed)
            assert bypass[f"rollout_corr/{k}"] == theirs[k]


def test_chi2_seq_averages_over_the_non_empty_rows():
    """verl averages chi2_seq over every row (an empty row adds W = 1); the readings over the non-empty ones."""
    pytest.importorskip("verl")
    from verl.trainer.ppo.rollout_corr_helper import compute_offpolicy_metrics

    lp, lm, mask, _ = ragged(5, empty_row=True)
    ours = offpolicy_readings(lp, lm, mask)
    keep = mask.any(-1)
    theirs = compute_offpolicy_metrics(old_log_prob=lp[keep], rollout_log_prob=lm[keep], response_mask=mask[keep])
    assert ours["chi2_seq"] == pytest.approx(theirs["chi2_seq"], rel=1e-12)
    everything = compute_offpolicy_metrics(old_log_prob=lp, rollout_log_prob=lm, response_mask=mask)
    n = len(mask)
    assert everything["chi2_seq"] == pytest.approx(ours["chi2_seq"] * (n - 1) / n, rel=1e-12)


@pytest.mark.parametrize("spread", [0.05, 0.5, 2.0])
def test_ess_is_verls_normalized_eff_sample_size(spread):
    """ess = verl's rollout_is_eff_sample_size of the untruncated token weights (verl adds 1e-8 to the mean)."""
    pytest.importorskip("verl")
    from verl.trainer.ppo.rollout_corr_helper import compute_is_metrics

    for seed in range(4):
        lp, lm, mask, _ = ragged(seed, spread=spread)
        r = (lp - lm).clamp(-20, 20)
        w = torch.exp(r) * mask
        theirs = compute_is_metrics(w, w, r, mask, rollout_is="token", rollout_is_threshold=1e300)
        ess = offpolicy_readings(lp, lm, mask)["ess"]
        assert ess == pytest.approx(theirs["rollout_is_eff_sample_size"], rel=1e-7), (spread, seed)


# ---------------------------------------------------------------------------
# the thresholds of docs/diagnostics.md
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_ess_is_one_over_one_plus_the_self_normalized_chi2(seed):
    """ess = 1/(1 + chi2_sn) = mean(w)^2/(1 + chi2_token), in [1/n, 1]; 1/n as one weight takes everything."""
    lp, lm, mask, _ = ragged(seed, spread=1.0)
    out = offpolicy_readings(lp, lm, mask)
    w = torch.exp(lp - lm)[mask]
    n = w.numel()
    chi2_sn = float(n * (w * w).sum() / w.sum() ** 2 - 1)
    assert out["ess"] == pytest.approx(1 / (1 + chi2_sn), rel=1e-12)
    assert out["ess"] == pytest.approx(float(w.mean()) ** 2 / (1 + out["chi2_token"]), rel=1e-12)
    assert 1 / n <= out["ess"] <= 1
    collapsed = lm.clone()
    collapsed[0, 0] -= 19.0  # one token's weight e^19, the others ~1: ess -> 1/n
    assert offpolicy_readings(lp, collapsed, mask)["ess"] == pytest.approx(1 / n, rel=1e-4)


def test_regime_changes_sign_where_the_group_soft_value_meets_the_baseline():
    """sign eta = sign log mean_i exp(A_i / beta): A = r - V changes regime at V = beta log mean exp(r / beta)."""
    beta = 0.2
    r = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    v_star = beta * np.log(np.mean(np.exp(r / beta)))
    for shift, sign in [(-0.05, 1), (-1e-3, 1), (1e-3, -1), (0.05, -1)]:
        adv = (r - (v_star + shift))[None]
        assert group_regime(adv, beta)[0] == sign
        assert np.sign(lambert_eta(adv, beta)[0]) == sign
    assert group_regime((r - v_star)[None], beta)[0] == 0
    assert abs(lambert_eta((r - v_star)[None], beta)[0]) < 1e-9


def test_regime_of_each_baseline():
    """Mean baseline and OAPL (beta1 > beta): +1, 0 on a group of equal rewards; shifted mean: +1 (eta >= delta);
    the group soft value at beta: 0 in every group; the optimistic control: -1."""
    rng = np.random.default_rng(0)
    r = torch.as_tensor(rng.integers(0, 2, (64, 8)).astype(float))
    r[0] = 1.0  # a group of equal rewards
    for name, expect in [("opmd", 1), ("opmd_loo", 1), ("shifted_regression", 1), ("opmd_lme", 0), ("oapl", 1),
                         ("opmd_above", -1)]:
        obj = make_objective(name)
        regime = group_regime(obj.advantages(r), obj.params["beta"])
        if name in ("opmd", "opmd_loo", "oapl"):
            assert regime[0] == 0 and (regime[1:] == expect).all(), name
        else:
            assert (regime == expect).all(), (name, regime)


def test_equal_rewards_leave_mu_past_delta_1():
    """opmd_above on a group of equal rewards (A_i = -delta beta, eta = -delta at pi = mu): pi = mu is a local
    minimum iff 1 + eta u = 1 - delta > 0; past delta = 1 every local minimum puts one completion on W_{-1}
    (u > 1/|eta|). The global minimizer can leave mu earlier (section 3: the negative regime is non-convex)."""
    beta = 0.1
    for G in (2, 4, 8):
        mu = np.full(G, 1 / G)
        for delta in (0.5, 0.9, 0.99, 1.01, 1.2, 1.5):
            sp = lambert_stationary_points(mu, np.full(G, -delta * beta), beta)
            n = int(sp.count)
            at_mu = [np.allclose(p, mu) for p in sp.pi[:n]]
            assert any(at_mu) == (delta < 1), (G, delta)
            if delta > 1:
                assert (sp.branch_arm[:n] >= 0).all()
                u_top = sp.pi[np.arange(n), sp.branch_arm[:n]] * G
                assert (1 + sp.eta[:n] * u_top < 0).all(), (G, delta)


def test_clip_threshold_values():
    """kappa = min(eps_h - log(1 + eps_h), -eps_l - log(1 - eps_l))."""
    assert clip_k3_threshold(0.2, 0.2) == pytest.approx(0.2 - math.log(1.2), rel=1e-15)  # 0.01768: the upper side
    assert clip_k3_threshold(0.2, 0.28) == pytest.approx(-0.2 - math.log(0.8), rel=1e-15)  # 0.02314: the lower side
    assert clip_k3_threshold(None, 4.0) == pytest.approx(4.0 - math.log(5.0), rel=1e-15)  # CISPO-ScaleRL's cap
    assert clip_k3_threshold(1.0, None) == math.inf
    with pytest.raises(ValueError, match="> 0"):
        clip_k3_threshold(-0.1, 0.2)


@pytest.mark.parametrize("name", ["ppo", "dapo", "cispo_scalerl"])
def test_clip_fraction_is_bounded_by_k3_over_the_threshold(name):
    """Markov: the share of tokens outside [1 - eps_l, 1 + eps_h] (a superset of those clipped) is <= k3_kl / kappa."""
    obj = make_objective(name)
    kappa = clip_k3_threshold(obj.params["eps_low"], obj.params["eps_high"])
    for seed in range(5):
        for spread in (0.05, 0.2, 1.0, 3.0):
            lp, lm, mask, adv = ragged(seed, spread=spread)
            k3 = offpolicy_readings(lp, lm, mask)["k3_kl"]
            clipped = obj.clipped(lp, lm, adv, mask)
            assert float(clipped.sum()) / float(mask.sum()) <= k3 / kappa + 1e-12, (name, seed, spread)


def test_uniform_drift_reaches_the_clip_edge_at_the_threshold():
    """Every token at r = log(1 + eps): k3_kl = kappa exactly; just past it every token is outside the range."""
    obj = make_objective("ppo")
    kappa = clip_k3_threshold(0.2, 0.2)
    mask = torch.ones(3, 4, dtype=torch.bool)
    adv = torch.ones(3, dtype=torch.float64)
    lm = torch.full((3, 4), -1.0, dtype=torch.float64)
    at = offpolicy_readings(lm + math.log(1.2), lm, mask)["k3_kl"]
    assert at == pytest.approx(kappa, rel=1e-12)
    assert not obj.clipped(lm + math.log(1.2) - 1e-9, lm, adv, mask).any()
    assert obj.clipped(lm + math.log(1.2) + 1e-9, lm, adv, mask).all()


def test_m2po_mask_binds_iff_the_second_moment_exceeds_tau():
    tau = 0.04
    lp, lm, mask, _ = ragged(0)
    r = (lp - lm)[mask]
    for target in (0.5 * tau, 0.99 * tau, 1.01 * tau, 4 * tau):
        scale = math.sqrt(target / float((r * r).mean()))
        lp2 = lm + scale * (lp - lm)
        kept = m2po_mask(lp2, lm, mask, tau=tau)
        assert bool((kept[mask] == 1).all()) == (target <= tau), target


def test_k1_k3_target_exists_iff_adv_over_beta_above_minus_one():
    """h = A + beta is constant in u, so kappa = E_mu[A] + beta: the target is defined iff E_mu[A] / beta > -1."""
    mu = np.array([0.5, 0.3, 0.2])
    base = np.array([0.2, -0.1, -0.25])
    base = base - mu @ base
    for name in ("reinforce_k1", "reinforce_k3"):
        obj = make_objective(name, beta=0.1)
        for ratio in (0.5, 0.0, -0.5, -0.98, -1.02, -1.5, -3.0):  # E_mu[A] / beta
            pi = obj.closed_form_target(mu, base + ratio * 0.1)
            assert np.isfinite(pi).all() == (ratio > -1), (name, ratio, pi)


def test_k1_target_eta_closed_form():
    """At the k1/k3 target pi = mu (A + beta)/(E A + beta) (every A > -beta): eta = E A/beta + log(1 + E A/beta)
    - E log(1 + A/beta) >= E A/beta (Jensen)."""
    rng = np.random.default_rng(3)
    beta = 0.5
    for _ in range(5):
        mu = rng.dirichlet(np.ones(5))
        adv = rng.uniform(-0.4, 1.0, 5)
        pi = make_objective("reinforce_k1", beta=beta).closed_form_target(mu, adv)
        eta = mu @ np.log(mu / pi) + mu @ adv / beta
        a = mu @ adv / beta
        assert eta == pytest.approx(a + np.log1p(a) - mu @ np.log1p(adv / beta), rel=1e-10)
        assert eta >= a - 1e-12


def test_regression_pull_is_stable_at_every_lag_iff_lr_2beta2_dmax_le_1():
    """The delayed pull per eigen-direction: lambda^{L+1} - (1 - c) lambda^L - c = 0 with c = lr 2 beta^2 d;
    radius 1 for c <= 1 at every lag, >= c^{1/L} > 1 past it. d_max <= 1/2, so lr beta^2 <= 1 is stable on any mu."""
    from sims import lag as sl

    beta = 0.5
    rng = np.random.default_rng(0)
    for mu in (np.array([0.5, 0.5]), rng.dirichlet(np.ones(6))):
        d = np.linalg.eigvalsh(np.diag(mu) - np.outer(mu, mu)).max()
        assert d <= 0.5 + 1e-15
        lr_star = 1 / (2 * beta**2 * d)
        cs = np.array([0.5, 0.99, 1.01, 1.5])
        lags = [1, 2, 8]
        rad = sl.stability_map("opmd", lags, cs * lr_star, Bandit("b", mu, np.linspace(1, 0, mu.size), ""),
                               obj_params={"beta": beta})
        assert np.allclose(rad[:, :2], 1.0, atol=1e-8)
        for i, L in enumerate(lags):
            assert (rad[i, 2:] >= cs[2:] ** (1 / L) - 1e-8).all() and (rad[i, 2:] > 1).all()
        assert 1 / beta**2 <= lr_star + 1e-12


# ---------------------------------------------------------------------------
# which readings each objective has, and the documented table
# ---------------------------------------------------------------------------


def test_temperature_and_prediction_by_capability():
    have = {n for n in OBJECTIVES if temperature(make_objective(n)) is not None}
    assert {"reinforce_k1", "reinforce_k2", "reinforce_k3", "oapl", "opmd", "shifted_regression"} <= have
    assert not {"pg", "ppo", "topr", "m2po", "awr", "tpo", "astar_po"} & have
    assert {n for n in OBJECTIVES if predicts_eta(make_objective(n))} == {
        n for n in OBJECTIVES if make_objective(n).family == "regression" and "ref" not in make_objective(n).needs}


def _doc_table():
    """docs/diagnostics.md's table: verl loss -> (readings, other keys)."""
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `zoo_(\w+)` \| (.*?) \| (.*?) \|", line)
        if m:
            rows[m.group(1)] = (tuple(re.findall(r"`(\w+)`", m.group(2))), tuple(re.findall(r"`([\w/]+)`", m.group(3))))
    return rows


def test_the_documented_keys_are_the_readings_of_every_verl_zoo_loss():
    rows = _doc_table()
    registered = [s.name for s in BUILTIN_SPECS if runs_as_zoo_loss(s.name)]
    assert sorted(rows) == sorted(registered)
    for name, (names, other) in rows.items():
        obj = make_objective(name)
        assert names == reading_names(obj), name
        expect = {"actor/ppo_kl"} | ({"actor/pg_clipfrac"} if obj.clips else set())
        if predicts_eta(obj):
            expect |= {"actor/zoo/eta_groups"}
        assert set(other) == expect, name
