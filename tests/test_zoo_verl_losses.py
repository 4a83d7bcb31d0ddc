"""verl 0.9.1's DPPO (TV, KL), GMPO, Clip-Cov and KL-Cov in the zoo (``theory.zoo_verl``).

* each zoo loss equals verl's built-in (value and gradient to 1e-6) on ragged random batches, at verl's
  default settings and at others, for every ``loss_agg_mode`` with and without the global-batch
  normalizers (skipped without verl, like ``tests/test_integrations_verl.py``; CI step 2 runs it with verl);
  verl's ``bypass_mode`` is the zoo's ``ppo`` / ``cispo`` (it is a way to run those, not a loss of its own);
* hand-worked values, one case per loss;
* the population weights: against the autograd of the loss on a batch whose token counts are
  ``N mu`` (the batch statistics of Clip-Cov and KL-Cov are then the population's);
* the targets: DPPO-TV's linear program (scipy's ``linprog``) against explicit Euler on the flow in a
  regime where the flow stops in finite time; GMPO's against PPO's LP face with the ratio range
  ``[e^-eps, e^eps]`` (``theory.induced.ppo_clip_target_set``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from theory import losses as L
from theory.induced import euler_flow, population_surrogate, ppo_clip_target_set
from theory.objectives import make_objective
from _zoo_checks import assert_close, value_and_grad

TOL = 1e-6
NAMES = ("dppo_tv", "dppo_kl", "gmpo", "clip_cov", "kl_cov")
GLOBAL = {"dp_size": 2, "batch_num_tokens": 100, "global_batch_size": 20, "loss_scale_factor": 16}
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

#: settings other than verl's defaults: per objective, (actor settings, zoo parameters)
OTHER = {
    "dppo_tv": ({"clip_ratio_low": 0.05, "clip_ratio_high": 0.1, "clip_ratio_c": 1.5},
                dict(delta_low=0.05, delta_high=0.1, is_cap=1.5)),
    "dppo_kl": ({"clip_ratio_low": 0.02, "clip_ratio_high": 0.05, "clip_ratio_c": 20.0},
                dict(delta_low=0.02, delta_high=0.05, is_cap=20.0)),
    "gmpo": ({"clip_ratio_low": 0.1, "clip_ratio_high": 0.3}, dict(log_eps_low=0.1, log_eps_high=0.3)),
    # a wide covariance band and a large share: many candidates, and fewer drawn than there are
    "clip_cov": ({"clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "policy_loss.clip_cov_ratio": 0.1,
                  "policy_loss.clip_cov_lb": 0.02, "policy_loss.clip_cov_ub": 3.0},
                 dict(eps_high=0.28, cov_ratio=0.1, cov_low=0.02, cov_high=3.0)),
    "kl_cov": ({"policy_loss.kl_cov_ratio": 0.2, "policy_loss.ppo_kl_coef": 1.0}, dict(cov_ratio=0.2, kl_coef=1.0)),
}


def make_batch(seed, B=8, T=12, spread=0.6, dtype=torch.float64):
    """Ragged (B, T) batch (row 0 full, row 1 empty); probabilities up to ~0.9 so DPPO's masks bind."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0], lens[1] = T, 0
    mask = torch.arange(T)[None] < lens[:, None]
    lp = -torch.rand(B, T, generator=g, dtype=dtype) * 2.5 - 0.1
    old = (lp + spread * torch.randn(B, T, generator=g, dtype=dtype)).clamp(max=-1e-3)
    adv = torch.randn(B, generator=g, dtype=dtype)[:, None] * mask
    return dict(lp=lp.requires_grad_(), old=old, adv=adv, mask=mask)


# ---------------------------------------------------------------------------
# verl's built-in losses vs the zoo's
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verl_api():
    pytest.importorskip("verl", reason='verl is not installed: pip install torch==2.13.0 -e ".[verl]"')
    import sims.integrations.verl as zv
    from verl.trainer.ppo import core_algos
    from verl.workers.config import ActorConfig, PolicyLossConfig

    def config(actor, info):
        actor = dict(actor)
        pl = {k.split(".", 1)[1]: actor.pop(k) for k in list(actor) if k.startswith("policy_loss.")}
        cfg = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                          policy_loss=PolicyLossConfig(**pl), **actor)
        cfg.global_batch_info.update(info)
        return cfg

    return core_algos, zv, config


def verl_and_zoo(verl_api, name, actor, params, mode, info, b, seed=0):
    """(verl, zoo) as (value, grad); the random draw of Clip-Cov seeded alike on both sides."""
    core_algos, zv, config = verl_api
    obj = make_objective(name, **params)
    m = b["mask"].to(b["lp"].dtype)
    torch.manual_seed(seed)  # Clip-Cov draws with torch.randperm on the default generator, in verl and the zoo
    v, _ = core_algos.get_policy_loss_fn(obj.spec.verl.loss_mode)(
        old_log_prob=b["old"], log_prob=b["lp"], advantages=b["adv"], response_mask=b["mask"], loss_agg_mode=mode,
        config=config(actor, info))
    torch.manual_seed(seed)
    tok = obj.loss(b["lp"], b["old"], b["adv"], m)
    # GMPO is one loss per sequence and verl averages it over the rows whatever loss_agg_mode says
    z = obj.aggregate(tok, m) if obj.level == "sequence" else zv.aggregate(tok, m, mode, **info)
    return value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"])


@pytest.mark.parametrize("info", [{}, GLOBAL], ids=["local", "global"])
@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("settings", ["verl-default", "other"])
@pytest.mark.parametrize("name", NAMES)
def test_loss_equals_verls(verl_api, name, settings, mode, info):
    rec = make_objective(name).spec.verl
    actor, params = (dict(rec.actor), {}) if settings == "verl-default" else OTHER[name]
    actor.setdefault("loss_agg_mode", mode)
    actor["loss_agg_mode"] = mode
    for seed in range(3):
        verl_vg, zoo_vg = verl_and_zoo(verl_api, name, actor, params, mode, info, make_batch(seed), seed)
        assert_close(verl_vg, zoo_vg, f"{name} ({settings}) vs verl {rec.loss_mode}, {mode}, seed {seed}")


def test_verl_defaults_are_the_zoos(verl_api):
    """The recipes' settings are verl's own defaults (ActorConfig / PolicyLossConfig), except GMPO's 0.4."""
    _, _, config = verl_api
    cfg = config({}, {})
    for name in ("dppo_tv", "dppo_kl"):
        p = make_objective(name).params
        assert (p["delta_low"], p["delta_high"], p["is_cap"]) == (cfg.clip_ratio_low, cfg.clip_ratio_high,
                                                                  cfg.clip_ratio_c)
    pc, pk = make_objective("clip_cov").params, make_objective("kl_cov").params
    pl = cfg.policy_loss
    assert (pc["cov_ratio"], pc["cov_low"], pc["cov_high"]) == (pl.clip_cov_ratio, pl.clip_cov_lb, pl.clip_cov_ub)
    assert (pk["cov_ratio"], pk["kl_coef"]) == (pl.kl_cov_ratio, pl.ppo_kl_coef)


def test_the_test_batches_exercise_the_masks_and_the_draw():
    """The comparisons above can fail: masks bind on some tokens, Clip-Cov draws fewer tokens than it has candidates."""
    b = make_batch(0)
    m = b["mask"]
    for div, (lo, hi) in (("tv", (0.2, 0.2)), ("kl", (0.02, 0.05))):
        keep = L.dppo_mask(b["lp"], b["old"], b["adv"], divergence=div, delta_low=lo, delta_high=hi)[m]
        assert 0 < keep.sum() < keep.numel()
    _, p = OTHER["clip_cov"]
    tok = make_objective("clip_cov", **p).loss(b["lp"], b["old"], b["adv"], m)
    ppo = make_objective("ppo", eps_high=0.28).loss(b["lp"], b["old"], b["adv"], m)
    detached = ((tok == 0) & (ppo != 0) & m).sum()
    cov = L.covariance_score(b["lp"], b["adv"], m)
    assert 0 < detached < ((cov > 0.02) & (cov < 3.0) & m).sum()


@pytest.mark.parametrize("cap", [2.0, 5.0])
def test_bypass_reinforce_is_cispo_without_a_lower_clip(verl_api, cap):
    """verl's bypass_mode, loss_type='reinforce', token IS truncated at C: -sg(min(u, C)) A log pi = cispo(1+e_h = C)."""
    core_algos, zv, config = verl_api
    b = make_batch(4)
    cfg = config({"policy_loss.rollout_correction": {"loss_type": "reinforce", "rollout_is": "token",
                                                     "rollout_is_threshold": cap}}, {})
    v, _ = core_algos.get_policy_loss_fn("bypass_mode")(old_log_prob=b["old"], log_prob=b["lp"],
                                                        advantages=b["adv"], response_mask=b["mask"],
                                                        loss_agg_mode="token-mean", config=cfg)
    m = b["mask"].to(b["lp"].dtype)
    obj = make_objective("cispo", eps_low=None, eps_high=cap - 1.0)
    z = zv.aggregate(obj.loss(b["lp"], b["old"], b["adv"], m), m, "token-mean")
    assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), f"bypass reinforce, C = {cap}")


def test_bypass_ppo_clip_is_ppo(verl_api):
    core_algos, zv, config = verl_api
    b = make_batch(5)
    cfg = config({"policy_loss.rollout_correction": {"loss_type": "ppo_clip"}}, {})
    v, _ = core_algos.get_policy_loss_fn("bypass_mode")(old_log_prob=b["old"], log_prob=b["lp"],
                                                        advantages=b["adv"], response_mask=b["mask"],
                                                        loss_agg_mode="token-mean", config=cfg)
    m = b["mask"].to(b["lp"].dtype)
    z = zv.aggregate(make_objective("ppo").loss(b["lp"], b["old"], b["adv"], m), m, "token-mean")
    assert_close(value_and_grad(v, b["lp"]), value_and_grad(z, b["lp"]), "bypass ppo_clip")


# ---------------------------------------------------------------------------
# hand-worked values
# ---------------------------------------------------------------------------


def _one(name, logp, logp_mu, adv, **params):
    lp = torch.tensor(logp, dtype=torch.float64)
    lm = torch.tensor(logp_mu, dtype=torch.float64)
    return make_objective(name, **params).loss(lp, lm, torch.tensor(adv, dtype=torch.float64))


def test_dppo_tv_by_hand():
    ln = math.log
    # mu = 0.5: pi = 0.8 (A = 1) and pi = 0.2 (A = -1) left the TV ball of 0.2 on their side: masked;
    # pi = 0.6 (A = 1) and 0.4 (A = -1) kept: -A u log pi with u = 1.2, 0.8
    out = _one("dppo_tv", [[ln(0.8)], [ln(0.6)], [ln(0.2)], [ln(0.4)]], [[ln(0.5)]] * 4, [1.0, 1.0, -1.0, -1.0])
    expect = [0.0, -1.2 * ln(0.6), 0.0, 0.8 * ln(0.4)]
    np.testing.assert_allclose(out[:, 0].detach().numpy(), expect, rtol=1e-12, atol=1e-15)
    # mu = 0.2, pi = 0.9 inside a ball of 0.8: u = 4.5 truncated at C = 3
    out = _one("dppo_tv", [[ln(0.9)]], [[ln(0.2)]], [1.0], delta_high=0.8)
    assert out.item() == pytest.approx(-3.0 * ln(0.9), rel=1e-12)


def test_dppo_kl_by_hand():
    ln = math.log
    # mu = 0.5 -> pi = 0.8: KL(Ber(.5)||Ber(.8)) = .5 ln(.5/.8) + .5 ln(.5/.2) = 0.2231 > 0.2: masked;
    # pi = 0.7: .5 ln(.5/.7) + .5 ln(.5/.3) = 0.0872: kept, -u A log pi = -1.4 ln 0.7
    d8 = 0.5 * ln(0.5 / 0.8) + 0.5 * ln(0.5 / 0.2)
    assert d8 == pytest.approx(0.22314355, abs=1e-8)
    out = _one("dppo_kl", [[ln(0.8)], [ln(0.7)], [ln(0.8)]], [[ln(0.5)]] * 3, [1.0, 1.0, -1.0])
    # the third moved up with A < 0: pushed back inside, never masked (p >= q)
    expect = [0.0, -1.4 * ln(0.7), 1.6 * ln(0.8)]
    np.testing.assert_allclose(out[:, 0].detach().numpy(), expect, rtol=1e-12, atol=1e-15)


def test_gmpo_by_hand():
    # s = (0.5, -0.1), A = 1: the clip holds 0.5 at 0.4 only; mean 0.15. A = -1, s = (-0.5, 0.1): -0.4, 0.1
    out = _one("gmpo", [[0.5, -0.1], [-0.5, 0.1]], [[0.0, 0.0]] * 2, [1.0, -1.0])
    np.testing.assert_allclose(out.detach().numpy(), [-math.exp(0.15), math.exp(-0.15)], rtol=1e-12)


# two sequences of two tokens: A = (1, -1), mean 0; log pi mean -0.9; covariances (0.8, -1.1 | 0.1, -0.4)
_LP = [[-0.1, -2.0], [-1.0, -0.5]]


def test_kl_cov_by_hand():
    lm = [[x - 0.4 for x in row] for row in _LP]  # s = 0.4 everywhere
    cov = L.covariance_score(torch.tensor(_LP), torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    np.testing.assert_allclose(cov.numpy(), [[0.8, -1.1], [0.1, -0.4]], rtol=1e-6)
    out = _one("kl_cov", _LP, lm, [1.0, -1.0], cov_ratio=0.25, kl_coef=0.5)  # 0.25 * 4 = 1 token: (0, 0)
    e = math.exp(0.4)
    np.testing.assert_allclose(out.detach().numpy(), [[-e + 0.5 * 0.4, -e], [e, e]], rtol=1e-12)


def test_clip_cov_by_hand():
    lm = [[x - 0.1 for x in row] for row in _LP]  # u = e^0.1 inside (0.8, 1.2): nothing clipped by PPO
    e = math.exp(0.1)
    # only token (0, 0) has its covariance (0.8) in (0.5, 1): the one token drawn, detached
    out = _one("clip_cov", _LP, lm, [1.0, -1.0], cov_low=0.5, cov_high=1.0)
    np.testing.assert_allclose(out.detach().numpy(), [[0.0, -e], [e, e]], rtol=1e-12)
    # no candidate in (2, 5): PPO-clip itself
    out = _one("clip_cov", _LP, lm, [1.0, -1.0], cov_low=2.0)
    np.testing.assert_allclose(out.detach().numpy(), [[-e, -e], [e, e]], rtol=1e-12)


# ---------------------------------------------------------------------------
# population weights: the autograd of the loss on a batch of N mu one-token sequences
# ---------------------------------------------------------------------------


def batch_weight(obj, counts, u, adv):
    """-(1 / (N mu_y)) sum over arm y's tokens of d(sum loss / N)/d log pi: the weight the batch realizes."""
    counts = np.asarray(counts)
    N, arm = counts.sum(), np.repeat(np.arange(len(counts)), counts)
    mu = counts / N
    logp = torch.tensor(np.log(u * mu)[arm]).requires_grad_(True)
    loss = obj.loss(logp[:, None], torch.tensor(np.log(mu)[arm])[:, None], torch.tensor(np.asarray(adv)[arm]), None)
    (g,) = torch.autograd.grad(loss.sum() / N, logp)
    return -np.bincount(arm, weights=g.numpy()) / mu


def population_cov(mu, u, adv):
    lp = np.log(u * mu)
    return (adv - mu @ adv) * (lp - mu @ lp)


@pytest.mark.parametrize("name,params", [
    ("dppo_tv", {}), ("dppo_tv", dict(is_cap=None)), ("dppo_kl", {}), ("dppo_kl", dict(delta_low=0.01)), ("gmpo", {}),
    ("kl_cov", dict(cov_ratio=0.25)), ("kl_cov", dict(cov_ratio=0.45, kl_coef=1.0)), ("kl_cov", {}),
])
def test_population_weight_is_the_batch_limit(name, params):
    rng = np.random.default_rng(1)
    N = 5000 if name == "kl_cov" and not params else 100  # the default share 2e-4: one token of 5000
    counts = np.array([0.5, 0.3, 0.2]) * N
    counts = counts.astype(int)
    obj = make_objective(name, **params)
    for _ in range(5):
        u = np.exp(rng.normal(scale=0.8, size=3))
        u = u / (u @ (counts / N))  # a policy: sum mu u = 1
        adv = rng.normal(size=3)
        h_batch = batch_weight(obj, counts, u, adv)
        h = obj.weight(torch.tensor(u), torch.tensor(adv), torch.tensor(counts / N)).numpy()
        np.testing.assert_allclose(h, h_batch, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_clip_cov_population_weight_is_the_batch_limit(share):
    """Covariance band around one arm: any draw detaches the same number of that arm's tokens."""
    rng = np.random.default_rng(2)
    counts = np.array([50, 30, 20])
    mu = counts / 100
    for _ in range(5):
        u = np.exp(rng.uniform(-0.15, 0.15, size=3))  # inside PPO's clip: every arm a candidate in its band
        u = u / (u @ mu)
        adv = rng.normal(size=3)
        cov = population_cov(mu, u, adv)
        y = int(np.argmax(cov))
        gap = np.sort(np.abs(cov - cov[y]))[1]
        obj = make_objective("clip_cov", cov_ratio=share, cov_low=cov[y] - gap / 2, cov_high=cov[y] + gap / 2)
        torch.manual_seed(0)
        h_batch = batch_weight(obj, counts, u, adv)
        h = obj.weight(torch.tensor(u), torch.tensor(adv), torch.tensor(mu)).numpy()
        ppo = u * adv
        kept = np.ones(3)
        kept[y] = 1 - min(1.0, share / mu[y])
        np.testing.assert_allclose(h, ppo * kept, rtol=1e-12)
        np.testing.assert_allclose(h, h_batch, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------
# induced targets
# ---------------------------------------------------------------------------


def lp_value(A, hi, lo):
    r"""max over the simplex of sum_{A>0} A min(pi, hi) + sum_{A<0} A max(pi, lo), by linprog on (pi, t)."""
    K = len(A)
    rows, rhs = [], []
    for y in np.flatnonzero(A != 0):
        sg = 1.0 if A[y] > 0 else -1.0
        r = np.zeros(2 * K)
        r[K + y], r[y] = sg, -sg  # t <= pi (A > 0), t >= pi (A < 0)
        rows.append(r), rhs.append(0.0)
        r = np.zeros(2 * K)
        r[K + y] = sg
        rows.append(r), rhs.append(sg * (hi[y] if A[y] > 0 else lo[y]))
    eq = np.concatenate([np.ones(K), np.zeros(K)])[None]
    res = scipy.optimize.linprog(np.concatenate([np.zeros(K), -A]), A_ub=np.array(rows), b_ub=rhs, A_eq=eq,
                                 b_eq=[1.0], bounds=[(0, 1)] * K + [(None, None)] * K)
    assert res.success
    return -res.fun


def test_dppo_tv_flow_ends_on_its_linear_programs_face():
    """Every arm can sit on its ball's edge (sum of the edges <= 1): the flow stops there, at the LP's value."""
    rng = np.random.default_rng(3)
    obj = make_objective("dppo_tv", delta_low=0.1, delta_high=0.1)
    for _ in range(4):
        mu = 0.15 + 0.4 * rng.dirichlet(np.ones(4))  # every mu > delta: each floor mu - delta is positive
        mu = mu / mu.sum()
        adv = np.array([1.0, -0.3, -1.0, -0.6]) + rng.normal(scale=0.1, size=4)
        hi, lo = mu + 0.1, mu - 0.1
        assert hi[0] + lo[1:].sum() <= 1.0
        eu = euler_flow(lambda u, a: obj.weight(u, a, torch.tensor(mu)), mu, adv)
        assert eu.converged
        J = np.where(adv > 0, adv * np.minimum(eu.pi, hi), adv * np.maximum(eu.pi, lo)).sum()
        value = lp_value(adv, hi, lo)
        assert value == pytest.approx(adv[0] * hi[0] + adv[1:] @ lo[1:], rel=1e-9)
        assert J == pytest.approx(value, abs=1e-6)


def test_gmpo_target_is_ppos_lp_face_with_the_exponentiated_range():
    rng = np.random.default_rng(4)
    obj = make_objective("gmpo", log_eps_low=0.3, log_eps_high=0.2)
    el, eh = -math.expm1(-0.3), math.expm1(0.2)
    ppo = make_objective("ppo", eps_low=el, eps_high=eh)
    mu = rng.dirichlet(np.ones(4), size=4)
    r = rng.uniform(size=(4, 4))
    t = obj.induced_target(mu, r)
    adv = obj.population_advantage(mu, r)
    for i in range(4):
        value = ppo_clip_target_set(mu[i], adv[i], el, eh)[0]
        J = population_surrogate(ppo, t.pi[i][None], mu[i], adv[i])[0]
        assert J == pytest.approx(value, abs=1e-6)
        np.testing.assert_allclose(obj.weight(torch.tensor(t.pi[i] / mu[i]), torch.tensor(adv[i])).numpy(),
                                   ppo.weight(torch.tensor(t.pi[i] / mu[i]), torch.tensor(adv[i])).numpy())
