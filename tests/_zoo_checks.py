"""Helpers the objective tests share: a random bandit, the weight autograd implies, value-and-gradient equality."""

from __future__ import annotations

import numpy as np
import torch

TOL = 1e-6
"""Agreement of two losses (value and gradient), as the verl and TRL equality tests require."""


def random_bandit(K=5, seed=0):
    """mu ~ Dirichlet(1) and rewards ~ U[0, 1] on K arms."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(K)), rng.uniform(size=K)


def autograd_weight(obj, mu, adv, u):
    """-d/ds of the mu-weighted per-sample loss of K one-token samples, divided by mu: the weight autograd implies."""
    mu_t = torch.tensor(mu)
    logmu = torch.log(mu_t)[:, None]
    logp = (logmu + torch.log(torch.tensor(u))[:, None]).clone().requires_grad_(True)
    sig = torch.tensor(adv)
    if obj.spec.signal == "awr":
        sig = torch.exp(sig / obj.params["beta"])
    elif obj.spec.signal == "tpo":
        z = sig / obj.params["beta"]
        w = torch.exp(z - z.max())
        sig = w / (mu_t * w).sum()
    kw = {}
    if "prox" in obj.needs:
        kw["logp_prox"] = logp.detach()
    if "ref" in obj.needs:
        kw["logp_ref"] = logmu
    if "expected" in obj.needs:  # E_{v~mu} log pi(v), the same at every sample (one position), with its gradient
        kw["logp_expected"] = (mu_t[:, None] * logp).sum(0, keepdim=True).expand_as(logp)
    loss = obj.loss(logp, logmu, sig, None, **kw)
    if loss.ndim == 2:
        loss = loss[:, 0]
    (g,) = torch.autograd.grad((mu_t * loss).sum(), logp)
    return -(g[:, 0] / mu_t).numpy()


def value_and_grad(loss, lp):
    """(the loss, detached; its gradient with respect to ``lp``)."""
    (g,) = torch.autograd.grad(loss, lp)
    return loss.detach(), g


def assert_close(a, b, what, tol=TOL):
    """Two (value, gradient) pairs agree to ``tol`` in max-abs difference."""
    (va, ga), (vb, gb) = a, b
    dv, dg = (va - vb).abs().max().item(), (ga - gb).abs().max().item()
    assert dv <= tol and dg <= tol, f"{what}: |value diff| = {dv:.2e}, |grad diff| = {dg:.2e}"
