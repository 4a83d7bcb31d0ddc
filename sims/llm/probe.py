r"""The converged probe: does the LLM reach the target each regression baseline induces?

The confirmation grid (:mod:`sims.llm.confirm`) takes one optimizer step per
batch, so its policy is never near the target of any single batch. This probe
asks the question the theory answers exactly. The behaviour :math:`\mu` is frozen
(the SFT model: the limit of a very long lag), each probed prompt gets fresh
groups of ``G`` completions from :math:`\mu` at every step, and the objective's
own loss is minimized until it stops moving. Where the network can represent the
target, the result must be the induced target of theory.

**Prediction.** The reward takes a few values :math:`r_c` on a prompt's
completions (0 and 1 for chain sums), so a prompt is a bandit over reward
classes, :math:`\mu_c = P_\mu(r = r_c)`, estimated from ``eval_samples``
completions of :math:`\mu`. A trainer that regresses on fresh groups has the
fixed point of the population regression at the conditional advantage
:math:`\bar A_c = E[A_1\mid r_1 = r_c]` (``theory.advantages.conditional_group_advantage``:
the group's own baseline, with its finite-G bias). The regression
:math:`E_\mu(\beta s - \bar A)^2` with :math:`s = \log\pi(y)/\mu(y)` then has
the Lambert target, constant on each class:

.. math:: \log u_c + \eta\, u_c = \bar A_c/\beta, \qquad \sum_c \mu_c u_c = 1, \qquad u_c = \pi_c/\mu_c

(``theory.lambert``; every local minimum is listed in the negative regime). The
nominal Gibbs target :math:`\pi_c\propto\mu_c e^{r_c/\beta}` is what "KL-regularized
policy optimization at temperature beta" promises.

**Realized.** On the same :math:`\mu`-samples :math:`y_i` (``n`` per prompt), with
:math:`s_i` the converged model's sequence log-ratio:

* class log-ratio :math:`\log\hat u_c = \log\big(\frac{1}{n_c}\sum_{i\in c} e^{s_i}\big)`
  (importance estimate of :math:`\log\pi(c)/\mu(c)`), and the spread of
  :math:`s_i` within the class (0 at the exact target);
* :math:`\hat\eta = \frac1n\sum_i(\bar A_{c(i)}/\beta - s_i)`, the identity
  :math:`\eta = \mathrm{KL}(\mu\|\pi) + E_\mu[\bar A]/\beta` of the stationary point;
* :math:`\widehat{\mathrm{KL}}(\mu\|\pi) = \frac1n\sum_i(-s_i)`;
* the leak :math:`1 - \frac1n\sum_i e^{s_i}`, the mass pi moves off mu's support
  (importance estimate; compared with the relaxed target's deficit);
* the pass rate of :math:`\pi` by sampling ``eval_samples`` completions from it
  (a second route to the correct class's mass, without importance weights).

``run`` writes ``probe.csv`` (one row per objective, seed and prompt: predicted
and realized), ``trajectory.csv`` (the realized quantities every ``log_every``
steps), ``summary.csv`` (mean and standard error over seeds and prompts) and
``tables.md`` (:func:`report`: the same as markdown tables), all
atomically (through :mod:`theory.outputs`) after every cell; a rerun into the
same directory keeps the cells already there when every other setting matches
``probe.json`` (the grid grows in place). A folder whose ``probe.json`` records
other settings, or that holds results of another command without one, is
refused unless
``--overwrite`` (which removes the probe's files and its ``sft/`` warm start,
nothing else, and starts over). A progress bar (stderr, when it is a terminal)
counts the cells.

    python -m sims.llm.probe --out-dir results/llm_probe
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from theory._numerics import softmax
from theory.advantages import conditional_group_advantage
from theory.lambert import lambert_stationary_points, relaxed_lambert_target
from theory.objectives import make_objective, objective_names
from theory.outputs import UsageError, atomic_write_bytes, cli_main, grid_to_grow, remove_outputs, require_folder

from ._cli import Parser, add_dataclass_arguments, require_config, usage_error
from .evaluate import paired_difference
from .rl import parse_objective_params
from .rundir import OUTPUT_NAMES, SFT_FILES, add_grid_arguments, config_from_args
from .sft import SFT_PRESETS, check_sft_arg, load_sft, make_optimizer, optimizer_step, warm_start

__all__ = [
    "DEFAULT_OBJECTIVES",
    "parse_spec",
    "ProbeConfig",
    "reward_classes",
    "predict",
    "realized",
    "select_prompts",
    "probe_cell",
    "SUMMARY_METRICS",
    "GAPS",
    "GRID",
    "read_rows",
    "summarize",
    "report",
    "PROBE_FILES",
    "SFT_FILES",
    "earlier_cells",
    "run",
]

DEFAULT_OBJECTIVES = ("opmd_above", "opmd_lme", "opmd_lme:beta1=1", "opmd", "shifted_regression")


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name`` or ``name:k=v,k=v`` -> (name, parameter overrides); ValueError naming ``objectives`` if malformed."""
    name, _, params = spec.partition(":")
    try:
        return name.strip(), parse_objective_params(params) if params else {}
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"objectives: {spec!r}: {e}") from None


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of one probe run."""

    sft: str = "smoke"
    """SFT preset trained once (in out_dir/sft) or an SFT checkpoint file: it is mu and the start."""
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    """Regression objectives of the zoo, as name or name:param=value,... (e.g. opmd_lme:beta1=1)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds: each picks its own prompts and draws its own samples."""
    prompts: int = 4
    """Prompts probed per seed (trained together, each with its own groups)."""
    pass_low: float = 0.15
    """A prompt is probed only if mu's pass rate on it (screened) is at least this..."""
    pass_high: float = 0.85
    """...and at most this."""
    screen_samples: int = 32
    """Completions of mu per candidate prompt when screening its pass rate."""
    group_size: int = 64
    """G: fresh completions of mu per prompt per step (the group of the objective's baseline)."""
    steps: int = 400
    """Optimizer steps."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine decay to 0 over the steps)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    eval_samples: int = 1024
    """Completions of mu per prompt for the prediction and the realized log-ratios; also drawn from pi at the end."""
    log_every: int = 25
    """Record the realized quantities every this many steps."""
    num_threads: int = 2
    """torch intra-op threads."""

    def __post_init__(self):
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.sft not in SFT_PRESETS and not Path(self.sft).is_file():
            raise ValueError(
                f"sft: {self.sft!r} is neither an SFT preset ({', '.join(sorted(SFT_PRESETS))}) nor a checkpoint file"
            )
        for name in ("prompts", "screen_samples", "steps", "eval_samples", "log_every", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size: must be >= 2, got {self.group_size}")
        if not 0 <= self.pass_low < self.pass_high <= 1:
            raise ValueError(f"pass_low, pass_high: need 0 <= pass_low < pass_high <= 1, got {self.pass_low}, {self.pass_high}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: must be >= 0, got {self.grad_clip}")
        if not self.objectives or not self.seeds:
            raise ValueError("objectives and seeds: need at least one each")
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds: must be >= 0, got {self.seeds}")
        for spec in self.objectives:
            name, params = parse_spec(spec)
            try:
                obj = make_objective(name, **params)
            except ValueError as e:
                raise ValueError(f"objectives: {spec!r}: {e}") from None
            if obj.family != "regression" or obj.level != "sequence" or obj.needs:
                raise ValueError(
                    f"objectives: {spec!r} is not a sequence-level regression on the behaviour policy "
                    "(the probe's prediction is the Lambert target of that family)"
                )


# ----------------------------------------------------------------------------- prediction


def reward_classes(rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct reward values (sorted) and each sample's class index."""
    values, idx = np.unique(np.asarray(rewards, dtype=np.float64), return_inverse=True)
    return values, idx


def predict(obj, mu_c: np.ndarray, r_c: np.ndarray, G: int) -> dict:
    r"""The objective's fixed point on the reward-class bandit ``(mu_c, r_c)`` with groups of ``G``.

    Returns a dict: ``adv`` (:math:`\bar A_c`), ``log_u`` and ``eta`` of the global
    minimizer on the simplex, ``stationary`` (every local minimum as (log_u, eta)), ``kl``
    (:math:`\mathrm{KL}(\mu\|\pi^*)`), ``reward`` (:math:`E_{\pi^*} r`); the relaxed
    target's (``theory.lambert.relaxed_lambert_target``: mass may leave the support)
    ``relaxed_log_u``, ``relaxed_eta``, ``relaxed_leak``; and the nominal Gibbs
    target's ``gibbs_log_u``, ``gibbs_kl``, ``gibbs_reward``.
    """
    beta = obj.params["beta"]
    adv = conditional_group_advantage(obj.advantage, mu_c, r_c, G, **obj.advantage_params())
    sp = lambert_stationary_points(mu_c, adv, beta)
    g = int(sp.global_index)
    cands = [(np.log(sp.pi[k] / mu_c), float(sp.eta[k])) for k in range(int(sp.count))]
    pi = sp.pi[g]
    pi_rel, eta_rel, leak = relaxed_lambert_target(mu_c, adv, beta)
    z = np.log(mu_c) + r_c / beta
    gibbs = softmax(z)
    return {
        "adv": adv,
        "log_u": np.log(pi / mu_c),
        "eta": float(sp.eta[g]),
        "stationary": cands,
        "kl": float(np.sum(mu_c * np.log(mu_c / pi))),
        "reward": float(pi @ r_c),
        "relaxed_log_u": np.log(pi_rel / mu_c),
        "relaxed_eta": float(eta_rel),
        "relaxed_leak": float(leak),
        "gibbs_log_u": np.log(gibbs / mu_c),
        "gibbs_kl": float(np.sum(mu_c * np.log(mu_c / gibbs))),
        "gibbs_reward": float(gibbs @ r_c),
    }


def realized(s: np.ndarray, cls: np.ndarray, adv_c: np.ndarray, beta: float) -> dict:
    """Class log-ratios, within-class spread, eta, KL and leak from log-ratios ``s`` of mu-samples of classes ``cls``.

    ``leak`` is :math:`1 - \\frac1n\\sum_i e^{s_i} = 1 - \\sum_c \\mu_c \\hat u_c`: the importance
    estimate of the mass pi puts where mu does not sample (0 when pi stays on mu's support).
    """
    K = len(adv_c)
    log_u = np.full(K, np.nan)
    spread = np.zeros(K)
    for c in range(K):
        sc = s[cls == c]
        if sc.size:
            log_u[c] = np.logaddexp.reduce(sc) - math.log(sc.size)
            spread[c] = sc.std()
    return {
        "log_u": log_u,
        "spread": spread,
        "eta": float(np.mean(adv_c[cls] / beta - s)),
        "kl": float(np.mean(-s)),
        "leak": float(1.0 - np.mean(np.exp(s))),
    }


# ----------------------------------------------------------------------------- the run


def _seq(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, logp, 0.0).sum(1)


def _sample(model, tok, task, problems, n, gen, chunk=1024):
    """``n`` completions per problem: (sequence log-probs under the sampler, scores, rollouts), rows grouped by problem."""
    prompts = tok.encode_prompts([p.prompt for p in problems])
    rolls, logps, scores = [], [], []
    for b, p in enumerate(problems):
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            roll = model.sample(prompts[b : b + 1], m, task.max_new_tokens, 1.0, gen)
            texts = tok.decode_batch(roll.tokens)
            rolls.append(roll)
            logps.append(_seq(roll.logp, roll.mask).double())
            scores.append(torch.tensor([task.score(t, p) for t in texts], dtype=torch.float64))
    return torch.cat(logps).view(len(problems), n), torch.cat(scores).view(len(problems), n), rolls


def _seq_logprobs(model, rolls) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([_seq(model.completion_logprobs(r), r.mask).double() for r in rolls])


def select_prompts(mu_model, task, cfg: ProbeConfig, seed: int, gen: torch.Generator) -> list:
    """The first ``cfg.prompts`` training problems (in a seeded order) whose screened pass rate under mu lies in range."""
    order = np.random.default_rng(seed).permutation(len(task.train))
    chosen = []
    for i in order:
        p = task.train[int(i)]
        _, sc, _ = _sample(mu_model, task.tokenizer, task, [p], cfg.screen_samples, gen)
        rate = float((sc == 1.0).double().mean())
        if cfg.pass_low <= rate <= cfg.pass_high:
            chosen.append(p)
            if len(chosen) == cfg.prompts:
                return chosen
    raise UsageError(
        f"pass_low, pass_high: only {len(chosen)} of {len(task.train)} training problems have a screened pass rate "
        f"in [{cfg.pass_low}, {cfg.pass_high}]; {cfg.prompts} are needed (widen the range or pass fewer --prompts)"
    )


def _class_predictions(obj, scores: torch.Tensor, G: int) -> tuple[list[dict], list[tuple]]:
    """Per prompt (rows of ``scores``, (P, n)): :func:`predict` on its reward classes, and ``(r_c, cls, mu_c)``."""
    preds, classes = [], []
    for b in range(len(scores)):
        r_c, cls = reward_classes(scores[b].numpy())
        mu_c = np.bincount(cls, minlength=len(r_c)) / len(cls)
        preds.append(predict(obj, mu_c, r_c, G))
        classes.append((r_c, cls, mu_c))
    return preds, classes


def _measure(model, rolls, lmu: torch.Tensor, classes: list[tuple], preds: list[dict], beta: float) -> list[dict]:
    """:func:`realized` per prompt for ``model`` on the fixed mu-samples ``rolls`` (sequence log-probs ``lmu``, (P, n))."""
    P = len(classes)
    s_all = (_seq_logprobs(model, rolls) - lmu.reshape(-1)).view(P, -1).numpy()
    out = []
    for b in range(P):
        r_c, cls, _ = classes[b]
        out.append(realized(s_all[b], cls, preds[b]["adv"], beta))
    return out


def _fit(cfg: ProbeConfig, obj, model, mu_model, task, problems: list, gen, measure) -> tuple[list[tuple], float]:
    """``cfg.steps`` steps of ``obj``'s loss on fresh groups of mu (cosine learning rate to 0).

    Returns ``(step, measure(model))`` at the start and every ``log_every`` steps
    (the last step included), and the training seconds.
    """
    tok, G, P = task.tokenizer, cfg.group_size, len(problems)
    opt = make_optimizer(model, cfg.lr, 0.0)
    prompts = tok.encode_prompts([p.prompt for p in problems])
    measured = [(0, measure(model))]
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * step / cfg.steps))
        with torch.no_grad():
            roll = mu_model.sample(prompts, G, task.max_new_tokens, 1.0, gen)
        texts = tok.decode_batch(roll.tokens)
        rewards = torch.tensor([task.score(t, problems[j // G]) for j, t in enumerate(texts)], dtype=torch.float64)
        signal = obj.advantages(rewards.view(P, G)).reshape(-1).float()
        logp = model.completion_logprobs(roll)
        loss = obj.aggregate(obj.loss(logp, roll.logp, signal, roll.mask), roll.mask)
        optimizer_step(model, opt, loss, cfg.grad_clip)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            measured.append((step + 1, measure(model)))
    return measured, time.perf_counter() - t0


def probe_cell(cfg: ProbeConfig, spec: str, seed: int, mu_model, task) -> tuple[list[dict], list[dict]]:
    """Train one (objective, seed) cell; return its per-prompt rows and its trajectory rows."""
    torch.set_num_threads(cfg.num_threads)
    name, params = parse_spec(spec)
    obj = make_objective(name, **params)
    tok = task.tokenizer
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu_model = mu_model.eval().requires_grad_(False)
    problems = select_prompts(mu_model, task, cfg, seed, gen)
    # mu-samples for the prediction and the realized quantities
    lmu_eval, sc_eval, rolls_eval = _sample(mu_model, tok, task, problems, cfg.eval_samples, gen)
    preds, classes = _class_predictions(obj, sc_eval, cfg.group_size)
    model = _copy(mu_model).train().requires_grad_(True)
    measure = functools.partial(
        _measure, rolls=rolls_eval, lmu=lmu_eval, classes=classes, preds=preds, beta=obj.params["beta"]
    )
    measured, train_s = _fit(cfg, obj, model, mu_model, task, problems, gen, measure)
    traj = [
        {
            "objective": spec,
            "seed": seed,
            "step": step,
            "eta": float(np.mean([o["eta"] for o in out])),
            "kl": float(np.mean([o["kl"] for o in out])),
            "log_u_fail": float(np.nanmean([o["log_u"][0] for o in out])),
            "eta_pred": float(np.mean([p["eta"] for p in preds])),
            "kl_pred": float(np.mean([p["kl"] for p in preds])),
            "log_u_fail_pred": float(np.mean([p["log_u"][0] for p in preds])),
        }
        for step, out in measured
    ]
    # a second route to the correct class's mass: sample from pi
    model.eval()
    _, sc_pi, _ = _sample(model, tok, task, problems, cfg.eval_samples, gen)
    rows = []
    for b, ((r_c, cls, mu_c), pr, re) in enumerate(zip(classes, preds, measured[-1][1])):
        top = int(np.argmax(r_c))
        nearest = min(pr["stationary"], key=lambda c: float(np.nanmax(np.abs(c[0] - re["log_u"]))))
        rows.append(
            {
                "objective": spec,
                "seed": seed,
                "prompt": b,
                "classes": " ".join(f"{v:g}" for v in r_c),
                "mu": " ".join(f"{v:.6g}" for v in mu_c),
                "mu_pass": float(mu_c[top]) if r_c[top] == 1.0 else 0.0,
                "adv": " ".join(f"{v:.6g}" for v in pr["adv"]),
                "eta_pred": pr["eta"],
                "eta": re["eta"],
                "kl_pred": pr["kl"],
                "kl": re["kl"],
                "log_u_fail_pred": float(pr["log_u"][0]),
                "log_u_fail": float(re["log_u"][0]),
                "log_u_top_pred": float(pr["log_u"][top]),
                "log_u_top": float(re["log_u"][top]),
                "spread_fail": float(re["spread"][0]),
                "spread_top": float(re["spread"][top]),
                "pass_pred": float(np.exp(pr["log_u"][top]) * mu_c[top]) if r_c[top] == 1.0 else 0.0,
                "eta_relaxed": pr["relaxed_eta"],
                "leak_relaxed": pr["relaxed_leak"],
                "leak": re["leak"],
                "log_u_fail_relaxed": float(pr["relaxed_log_u"][0]),
                "log_u_top_relaxed": float(pr["relaxed_log_u"][top]),
                "pass_relaxed": float(np.exp(pr["relaxed_log_u"][top]) * mu_c[top]) if r_c[top] == 1.0 else 0.0,
                "pass_pi": float((sc_pi[b] == 1.0).double().mean()),
                "reward_pred": pr["reward"],
                "reward_pi": float(sc_pi[b].mean()),
                "stationary_points": len(pr["stationary"]),
                "nearest_eta": nearest[1],
                "gibbs_log_u_fail": float(pr["gibbs_log_u"][0]),
                "gibbs_kl": pr["gibbs_kl"],
                "gibbs_reward": pr["gibbs_reward"],
                "train_s": train_s,
            }
        )
    return rows, traj


def _copy(model):
    import copy

    return copy.deepcopy(model)


# ----------------------------------------------------------------------------- files


SUMMARY_METRICS = (
    "eta_pred",
    "eta",
    "kl_pred",
    "kl",
    "log_u_fail_pred",
    "log_u_fail",
    "log_u_top_pred",
    "log_u_top",
    "spread_fail",
    "pass_pred",
    "eta_relaxed",
    "log_u_fail_relaxed",
    "pass_relaxed",
    "pass_pi",
    "leak_relaxed",
    "leak",
    "gibbs_log_u_fail",
    "gibbs_kl",
)
GAPS = (
    ("eta_gap", "eta", "eta_pred"),
    ("kl_gap", "kl", "kl_pred"),
    ("log_u_fail_gap", "log_u_fail", "log_u_fail_pred"),
    ("log_u_top_gap", "log_u_top", "log_u_top_pred"),
    ("pass_gap", "pass_pi", "pass_pred"),
    ("eta_relaxed_gap", "eta", "eta_relaxed"),
    ("log_u_top_relaxed_gap", "log_u_top", "log_u_top_relaxed"),
    ("pass_relaxed_gap", "pass_pi", "pass_relaxed"),
    ("leak_relaxed_gap", "leak", "leak_relaxed"),
)
"""(name, realized, predicted): the realized - predicted differences summarized per objective."""
GRID = ("objectives", "seeds")


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def read_rows(path: Path) -> list[dict]:
    """Rows of ``probe.csv`` or ``trajectory.csv``: text columns as text, seed/prompt/step counts as int, the rest float."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k in ("objective", "classes", "mu", "adv"):
                continue
            r[k] = int(v) if k in ("seed", "prompt", "step", "stationary_points") else float(v)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard error over (seed, prompt) of every metric, per objective, and the realized - predicted gaps."""
    out = []
    for spec in dict.fromkeys(r["objective"] for r in rows):
        cell = [r for r in rows if r["objective"] == spec]
        row = {"objective": spec, "n": len(cell)}
        for k in SUMMARY_METRICS:
            v = np.array([r[k] for r in cell], dtype=float)
            row[k] = float(v.mean())
            row[f"{k}_se"] = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None
        for name, k, pred in GAPS:
            d = np.array([r[k] - r[pred] for r in cell], dtype=float)
            row[name] = float(d.mean())
            row[f"{name}_se"] = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None
        out.append(row)
    return out


def _pm(row: dict, key: str) -> str:
    se = row.get(f"{key}_se")
    return f"{row[key]:.3f}" if se is None else f"{row[key]:.3f} ± {se:.3f}"


def report(summary: list[dict], rows: list[dict] | None = None) -> str:
    """Markdown tables of ``summary``: predicted and realized eta, fail-class log-ratio, KL and pass
    rate per objective (in ``DEFAULT_OBJECTIVES`` order), and the realized adjacent differences.

    With the per-prompt ``rows`` (``probe.csv``) the adjacent differences are paired by
    (seed, prompt) (``sims.llm.evaluate.paired_difference``): a seed picks the same prompts
    and the same frozen mu for every objective, so the pairs share mu's class
    frequencies. Without them: difference ± combined s.e. of the two means.
    """
    known = [o for o in DEFAULT_OBJECTIVES if any(r["objective"] == o for r in summary)]
    objs = known + [r["objective"] for r in summary if r["objective"] not in known]
    by = {r["objective"]: r for r in summary}
    n = sorted({int(r["n"]) for r in summary})
    out = [f"Mean ± s.e. over (seed, prompt) pairs (n = {'/'.join(map(str, n))}); objectives in their predicted order of pessimism.\n"]
    tables = [
        ("eta", [("Lambert", "eta_pred"), ("relaxed", "eta_relaxed"), ("realized", "eta")]),
        ("log pi(fail)/mu(fail) [nats]", [("Lambert", "log_u_fail_pred"), ("nominal Gibbs", "gibbs_log_u_fail"), ("realized", "log_u_fail")]),
        ("KL(mu || pi) [nats]", [("Lambert", "kl_pred"), ("nominal Gibbs", "gibbs_kl"), ("realized", "kl")]),
        ("pass rate", [("Lambert", "pass_pred"), ("relaxed", "pass_relaxed"), ("realized (sampled from pi)", "pass_pi")]),
        ("mass off mu's support", [("relaxed leak", "leak_relaxed"), ("realized leak (importance estimate)", "leak")]),
    ]
    for title, cols in tables:
        out.append(f"**{title}**\n")
        out.append("| objective | " + " | ".join(c for c, _ in cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for o in objs:
            out.append(f"| `{o}` | " + " | ".join(_pm(by[o], k) for _, k in cols) + " |")
        out.append("")
    out.append("**realized minus predicted** (mean ± s.e.)\n")
    out.append("| objective | " + " | ".join(name for name, _, _ in GAPS) + " |")
    out.append("|---|" + "---|" * len(GAPS))
    for o in objs:
        out.append(f"| `{o}` | " + " | ".join(_pm(by[o], name) for name, _, _ in GAPS) + " |")
    out.append("")
    pairs = list(zip(objs, objs[1:]))
    if pairs:
        how = "paired by (seed, prompt): mean ± s.e. of the differences" if rows else "difference ± combined s.e."
        out.append(f"**adjacent differences of the realized values** along the order ({how}, z = difference / s.e.):\n")
        out.append("| pair | eta | log pi(fail)/mu(fail) | KL(mu \\|\\| pi) | pass rate of pi |")
        out.append("|---|---|---|---|---|")
        for a, b in pairs:
            cells = []
            for k in ("eta", "log_u_fail", "kl", "pass_pi"):
                if rows:
                    va, vb = ({(r["seed"], r["prompt"]): r[k] for r in rows if r["objective"] == o} for o in (a, b))
                    if sum(key in vb for key in va) < 2:
                        cells.append("")
                        continue
                    d, se, _ = paired_difference(va, vb)
                else:
                    d = by[b][k] - by[a][k]
                    se = math.hypot(by[a].get(f"{k}_se") or 0.0, by[b].get(f"{k}_se") or 0.0)
                cells.append(f"{d:+.3f} ± {se:.3f} (z = {d / se:+.1f})" if se > 0 else f"{d:+.3f}")
            out.append(f"| `{a}` → `{b}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


PROBE_FILES = ("probe.json", "probe.csv", "trajectory.csv", "summary.csv", "tables.md")
"""The files the probe writes into its ``out_dir`` (besides its SFT warm start in ``sft/``)."""


def earlier_cells(cfg: ProbeConfig, out_dir: Path, overwrite: bool = False) -> tuple[list[dict], list[dict]]:
    """Rows of ``probe.csv`` and ``trajectory.csv`` already in ``out_dir`` that this run may keep.

    A grid grows in place when every setting outside ``GRID`` matches ``probe.json``.
    UsageError (naming the setting, and ``--overwrite``) when one differs, when
    ``probe.json`` is unreadable, or when ``out_dir`` holds results of another
    command (a file named in ``sims.llm.sft.OUTPUT_NAMES``) without a
    ``probe.json``; other files (a README) are left alone. With ``overwrite``:
    nothing is kept.
    """
    settings = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if not grid_to_grow(out_dir, out_dir / "probe.json", settings, GRID, OUTPUT_NAMES, overwrite=overwrite):
        return [], []
    if not (out_dir / "probe.csv").exists():
        return [], []
    traj_path = out_dir / "trajectory.csv"
    return read_rows(out_dir / "probe.csv"), read_rows(traj_path) if traj_path.exists() else []


def run(cfg: ProbeConfig, out_dir: str | Path, *, overwrite: bool = False, progress: bool | None = False) -> list[dict]:
    """Probe every (objective, seed) cell not already in ``out_dir``; return all per-prompt rows.

    Parameters
    ----------
    cfg : ProbeConfig
    out_dir : path
        Where the files go. The cells of an earlier probe there are kept when its
        settings match (:func:`earlier_cells`); otherwise the folder is refused.
    overwrite : bool
        Remove the earlier probe's files (``PROBE_FILES`` and the ``sft/`` warm
        start; nothing else) and start over.
    progress : bool or None
        Progress bar over the cells on stderr; None: only when stderr is a terminal.
    """
    require_config(cfg, ProbeConfig, "probe.run")
    out_dir = require_folder(out_dir, "out_dir")
    rows, traj = earlier_cells(cfg, out_dir, overwrite)
    check_sft_arg(cfg.sft)  # before anything is removed
    if overwrite:
        remove_outputs([out_dir / n for n in (*PROBE_FILES, *SFT_FILES)], [out_dir / "sft"])
    meta_path = out_dir / "probe.json"
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    done = {(r["objective"], r["seed"]) for r in rows}
    todo = [(o, s) for o in cfg.objectives for s in cfg.seeds if (o, s) not in done]
    out_dir.mkdir(parents=True, exist_ok=True)
    if not todo:
        if rows:  # derived files: rewritten from probe.csv (e.g. after a change of the summary)
            atomic_write_bytes(out_dir / "summary.csv", _csv_bytes(summarize(rows)))
            atomic_write_bytes(out_dir / "tables.md", report(summarize(rows), rows).encode())
        return rows
    mu_model, task, _ = load_sft(warm_start(cfg.sft, out_dir, cfg.num_threads))
    bar = tqdm(todo, desc="probe cells", unit="cell", disable=None if progress is None else not progress)
    for spec, seed in bar:
        bar.set_postfix_str(f"{spec} seed {seed}")
        r, t = probe_cell(cfg, spec, seed, mu_model, task)
        rows += r
        traj += t
        grid = {
            "objectives": list(dict.fromkeys([*(x["objective"] for x in rows), *cfg.objectives])),
            "seeds": sorted({x["seed"] for x in rows} | set(cfg.seeds)),
        }
        atomic_write_bytes(meta_path, json.dumps({**now, **grid}, indent=2).encode())
        atomic_write_bytes(out_dir / "trajectory.csv", _csv_bytes(traj))
        atomic_write_bytes(out_dir / "probe.csv", _csv_bytes(rows))
        atomic_write_bytes(out_dir / "summary.csv", _csv_bytes(summarize(rows)))
        atomic_write_bytes(out_dir / "tables.md", report(summarize(rows), rows).encode())
        tqdm.write(json.dumps({k: v for k, v in summarize(r)[0].items() if not k.endswith("_se")}), file=sys.stdout)
        sys.stdout.flush()
    bar.close()
    return rows


@cli_main
def main(argv=None) -> list[dict]:
    """``python -m sims.llm.probe``: the probe grid into ``--out-dir``; returns the summary rows."""
    regressions = [n for n in objective_names() if _is_probe_objective(n)]
    p = Parser(
        prog="python -m sims.llm.probe",
        description=__doc__.splitlines()[0],
        epilog="Objectives the probe accepts (sequence-level regressions on the behaviour policy): "
        + ", ".join(regressions) + ".",
    )
    add_grid_arguments(p, "probe.csv, trajectory.csv, summary.csv, tables.md, probe.json", "probe")
    base = ProbeConfig()
    add_dataclass_arguments(p, ProbeConfig, base)
    args, cfg = config_from_args(p, argv, ProbeConfig, base)
    try:
        rows = run(cfg, args.out_dir, overwrite=args.overwrite, progress=args.progress)
    except UsageError as e:
        raise usage_error(e, ProbeConfig) from None
    return summarize(rows)


def _is_probe_objective(name: str) -> bool:
    obj = make_objective(name)
    return obj.family == "regression" and obj.level == "sequence" and not obj.needs


if __name__ == "__main__":
    main()
