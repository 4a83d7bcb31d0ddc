r"""What the nearest theories predict on one bandit, next to the zoo's induced targets (``docs/related.md``).

``python -m theory.related`` prints the table that ``docs/related.md`` carries;
``tests/test_zoo_2026.py`` checks that the doc's numbers are this module's output.

On the bandit :data:`BANDIT` (:math:`K = 4` arms, behaviour :math:`\mu`, rewards
:math:`r`, temperature :math:`\beta`) each row is a distribution over the arms:

* **LPO** (Listwise Policy Optimization, arXiv 2605.06139): group policy gradients
  define a target on the response simplex by restricting the KL-proximal RL
  objective :math:`\max_q E_q[A] - \beta\,\mathrm{KL}(q\|\pi_{old})` to it; its
  maximizer is the Gibbs tilt :math:`q \propto \mu e^{A/\beta}` (here
  :math:`\pi_{old} = \mu`), the zoo's ``awr`` / ``tpo`` target.
* **PMD-mean** (arXiv 2602.05933): the regression
  :math:`(\beta\log(\pi/\mu) - (r - E_\mu r))^2` has the Lambert-W population
  solution, the zoo's ``opmd``; ideal PMD (exact log-partition) is the Gibbs tilt.
* **RL2ML** (arXiv 2605.30154): the family's population objectives are increasing
  functions of the success probability :math:`J(\pi) = E_\pi[r]` per prompt (from
  :math:`J` itself to :math:`\log J`); on one prompt every member is maximized at
  the best arm, the zoo's ``pg`` target.
* the zoo's own targets: ``grpo`` (the clip LP's point), ``opmd``, ``awr``, ``pg``.
"""

from __future__ import annotations

import numpy as np

from .objectives import make_objective

__all__ = ["BANDIT", "related_targets", "format_table"]

#: The bandit of the comparison: behaviour, rewards and the temperature shared by every framework.
BANDIT = {"mu": (0.4, 0.3, 0.2, 0.1), "r": (1.0, 0.0, 0.5, 0.8), "beta": 0.1}


def related_targets(mu=BANDIT["mu"], r=BANDIT["r"], beta=BANDIT["beta"]) -> list[tuple[str, str, np.ndarray]]:
    """Rows ``(framework, what it predicts, pi (K,))`` on the bandit ``(mu, r)`` at temperature ``beta``.

    Every row is computed by the zoo's induced-target routes (closed forms for
    Gibbs, Lambert and the vertex; explicit Euler on the LP face for ``grpo``).
    """
    def target(name, **params):
        return np.asarray(make_objective(name, **params).induced_target(np.asarray(mu), np.asarray(r)).pi)

    gibbs, lambert = target("awr", beta=beta), target("opmd", beta=beta)
    return [
        ("LPO (2605.06139)", "implicit target of a group gradient: q ∝ mu e^{A/beta}", gibbs),
        ("PMD ideal (2602.05933)", "exact log-partition: q ∝ mu e^{r/beta}", gibbs),
        ("PMD-mean (2602.05933)", "mean baseline: Lambert-W solution", lambert),
        ("RL2ML (2605.30154)", "argmax of f(J), f increasing: the best arm", target("pg")),
        ("zoo: grpo", "induced target of PPO-clip on (r - mean)/std", target("grpo")),
        ("zoo: opmd", "induced target of the regression (Lambert)", lambert),
        ("zoo: awr", "induced target of the weighted CE (Gibbs)", gibbs),
        ("zoo: pg", "induced target of the exact-ratio policy gradient", target("pg")),
    ]


def format_table(rows=None) -> str:
    """The rows as a markdown table (probabilities to 4 decimals), with the bandit stated above it."""
    rows = related_targets() if rows is None else rows
    K = len(rows[0][2])
    head = (f"Bandit: K = {K}, mu = {list(BANDIT['mu'])}, r = {list(BANDIT['r'])}, beta = {BANDIT['beta']}\n\n"
            "| framework | predicts | " + " | ".join(f"pi_{k}" for k in range(K)) + " |\n"
            "|---|---|" + "---|" * K + "\n")
    return head + "".join(f"| {a} | {b} | " + " | ".join(f"{p:.4f}" for p in pi) + " |\n" for a, b, pi in rows)


if __name__ == "__main__":
    print(format_table(), end="")
