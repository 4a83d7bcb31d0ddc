r"""RL on verifiable rewards, with a lagged behaviour policy: any objective of the zoo by name.

One RL step, for a batch of ``B`` training prompts:

1. **Sample** ``G`` completions per prompt with the *behaviour* weights
   :math:`\mu = \pi_{t-L}` (the weights of ``lag = L`` steps earlier; the oldest
   of a ring of ``L + 1`` weight snapshots), recording the behaviour
   log-probabilities at sampling time. Before step ``L`` the ring still holds the
   SFT weights, which then act as behaviour (a pipeline filled at start-up).
   This simulates asynchronous generation deterministically.
2. **Score** each completion with the task's verifiable reward
   (``Task.reward``, optional format weight) and turn the rewards ``(B, G)`` into
   the objective's signal with ``obj.advantages``.
3. **Update** ``inner_steps = k`` times on the same batch: the current policy's
   log-probabilities of the sampled tokens, ``obj.loss`` (with the reference
   model's log-probabilities where ``obj.needs`` has ``ref``: a frozen copy of
   the SFT model; and the policy's own detached log-probabilities at the start
   of the batch where it has ``prox``), ``obj.aggregate``, one AdamW step each.
4. **Push** the new weights into the ring.

:func:`rl_step` is one such step (:func:`sample_batch` does 1 and 2,
:func:`update_policy` 3, :func:`step_row` the row of ``metrics.csv``);
:func:`train_rl` loops over them and records through a
:class:`sims.llm.rundir.RunDir`.

The trainer defines no objective of its own: everything objective-specific
comes from ``theory.objectives.make_objective``. The regression family's eta
diagnostics come from ``sims.integrations.eta`` (fitted from the realized
log-ratios after the update, and predicted by the Lambert target).

A "step" is one batch (``k`` optimizer steps); ``lag`` counts steps, so with
``k = 1`` it counts optimizer steps. Seeds are data: one ``torch.Generator``
seeded with ``seed`` draws the prompts and the samples; evaluation samples from
a fresh generator seeded with ``seed + 1`` at each evaluation. With ``out_dir``
the run writes ``metrics.csv`` (one row per step; docs/llm_metrics.md defines
every column), an atomic ``ckpt.pt`` (model, optimizer, generator, ring, step,
metrics so far) every ``ckpt_every`` steps and at the end, and ``summary.json``
(each atomically, with the user's umask, through :mod:`theory.outputs`);
``--resume`` continues from ``ckpt.pt`` with identical metrics (wall-clock
columns aside), also after ``kill -9``. ``steps`` is a stopping rule, not part
of the trajectory (the learning-rate schedule has its own horizon, ``decay_steps``): ``--resume --steps 2N``
extends a finished N-step run to the run a straight ``--steps 2N`` gives. A
folder that already holds another run's files is refused unless ``--resume``
or ``--overwrite`` (remove that run's files, its ``sft/`` warm start and its
TensorBoard events, then start over). With ``tensorboard_dir`` the same
columns also go to TensorBoard as scalars (``sims.llm.tblog``; the optional
extra ``tensorboard``).

    python -m sims.llm.rl --preset smoke --objective opmd --lag 4 --out-dir runs/rl_smoke
    python -m sims.llm.rl --preset smoke --objective shifted_regression --objective-params beta=0.05,delta=2
"""

from __future__ import annotations

import argparse
import sys
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sims.integrations.eta import fitted_eta, lambert_eta
from theory.advantages import GROUP_INPUTS
from theory.objectives import Objective, make_objective, objective_names
from theory.outputs import UsageError, cli_main

from ._cli import Parser, add_dataclass_arguments, import_user_modules, note, require_config, usage_error
from .checkpoint import restore_checkpoint
from .evaluate import evaluate
from .model import GPT, Rollout
from .rundir import SFT_FILES, Progress, RunDir, add_run_arguments, config_from_args
from .sft import SFT_PRESETS, check_sft_arg, load_sft, make_optimizer, optimizer_step, train_sft
from .tasks import Task

__all__ = [
    "RLConfig",
    "RL_PRESETS",
    "RLResult",
    "load_warm_start",
    "snapshot",
    "clip_fraction",
    "STEP_METRICS",
    "column_mean",
    "RLState",
    "Batch",
    "draw_problems",
    "score_completions",
    "sample_batch",
    "update_policy",
    "step_row",
    "rl_step",
    "SFT_FILES",
    "RESUME_IGNORES",
    "check_run",
    "train_rl",
    "summary",
    "parse_objective_params",
]


@dataclass(frozen=True)
class RLConfig:
    """Settings of one RL run; ``RL_PRESETS`` holds ``smoke``, ``default`` and ``lag`` (the lag study's cells)."""

    sft: str = "default"
    """Warm start: an SFT checkpoint file (ckpt.pt of sims.llm.sft) or an SFT preset name to run first."""
    objective: str = "opmd"
    """Objective of the zoo (theory.objectives), by name."""
    objective_params: dict = field(default_factory=dict)
    """Overrides of the objective's parameters, e.g. beta=0.05,delta=2 (or a JSON object)."""
    lag: int = 0
    """L: samples come from the weights of L steps earlier (ring of L + 1 snapshots)."""
    group_size: int = 8
    """G: completions sampled per prompt."""
    prompts_per_step: int = 16
    """B: training prompts per step (B * G completions)."""
    inner_steps: int = 1
    """k: optimizer steps on each batch."""
    lr: float = 1e-4
    """AdamW learning rate (constant unless min_lr is set)."""
    min_lr: float | None = None
    """None: a constant learning rate. Otherwise cosine decay from lr at step 0 to min_lr at decay_steps, then
    min_lr (the schedule's horizon is its own field, so steps stays a stopping rule)."""
    decay_steps: int = 0
    """Horizon of the cosine decay (>= 1 when min_lr is set)."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices and embeddings."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    steps: int = 200
    """RL steps (batches). A stopping rule, not part of the run: --resume with a larger value extends a finished
    run along the same trajectory (the learning-rate schedule has its own horizon), keeping the evaluation it made at its old
    last step."""
    temperature: float = 1.0
    """Sampling temperature; the behaviour and current log-probabilities are taken at it too."""
    format_weight: float = 0.0
    """w in reward = (1 - w) * score + w * format_score."""
    reward: str = "score"
    """score: reasoning-gym's score (partial credit possible); correct: 1 when that score is exactly 1, else 0."""
    problems: str = "pool"
    """pool: draw prompts with replacement from the SFT task's training problems; fresh: new problems from the
    task's stream for this seed (sims.llm.tasks.ProblemStream), none repeated, none in the SFT pool or held out."""
    diag_every: int = 1
    """Compute kl_after and eta_fit (an extra forward pass) every this many steps and at the last; blank otherwise."""
    seed: int = 0
    """Seed of prompt and sample draws; evaluation sampling uses seed + 1."""
    eval_every: int = 50
    """Evaluate pass@k on the held-out problems every this many steps (and at the last)."""
    eval_samples: int = 8
    """Sampled completions per held-out problem (n of pass@k)."""
    eval_ks: tuple[int, ...] = (1, 4, 8)
    """The k values of pass@k (each <= eval_samples; must include 1)."""
    ckpt_every: int = 50
    """Write ckpt.pt every this many steps (with out_dir) and at the last; may change on --resume."""
    out_dir: str | None = None
    """Where metrics.csv, ckpt.pt, summary.json (and sft/ for an SFT preset) go."""
    tensorboard_dir: str | None = None
    """Also write every metrics.csv column as a TensorBoard scalar here (needs the extra 'tensorboard')."""
    num_threads: int = 2
    """torch intra-op threads."""
    device: str = "cpu"
    """Where the models train and sample: cpu or cuda[:i] (prompts are drawn on the CPU); part of the run
    (floating-point results differ), so --resume keeps it."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        object.__setattr__(self, "objective_params", dict(self.objective_params))
        object.__setattr__(self, "eval_ks", tuple(self.eval_ks))
        if self.sft not in SFT_PRESETS and not Path(self.sft).is_file():
            hint = f" (did you mean {Path(self.sft) / 'ckpt.pt'}?)" if (Path(self.sft) / "ckpt.pt").is_file() else ""
            raise ValueError(
                f"sft: {self.sft!r} is neither an SFT preset ({', '.join(sorted(SFT_PRESETS))}) nor a checkpoint "
                f"file{hint}"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device: must be cpu or cuda[:i], got {self.device!r}")
        if self.lag < 0:
            raise ValueError(f"lag: must be >= 0, got {self.lag}")
        for name in (
            "group_size",
            "prompts_per_step",
            "inner_steps",
            "steps",
            "eval_every",
            "eval_samples",
            "ckpt_every",
            "num_threads",
            "diag_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr: must lie in [0, lr={self.lr}] (or be None for a constant lr), got {self.min_lr}")
        if self.min_lr is not None and not (isinstance(self.decay_steps, int) and self.decay_steps >= 1):
            raise ValueError(f"decay_steps: the cosine decay to min_lr needs a horizon >= 1, got {self.decay_steps!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: must be >= 0, got {self.grad_clip}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {self.temperature}")
        if not 0 <= self.format_weight <= 1:
            raise ValueError(f"format_weight: must lie in [0, 1], got {self.format_weight}")
        if self.reward not in ("score", "correct"):
            raise ValueError(f"reward: must be score or correct, got {self.reward!r}")
        if self.problems not in ("pool", "fresh"):
            raise ValueError(f"problems: must be pool or fresh, got {self.problems!r}")
        if self.problems == "fresh" and self.seed >= 10**5:
            raise ValueError(f"seed: fresh problems need a seed below 100000, got {self.seed}")
        if 1 not in self.eval_ks or min(self.eval_ks) < 1 or max(self.eval_ks) > self.eval_samples:
            raise ValueError(
                f"eval_ks: must include 1 and lie in [1, eval_samples={self.eval_samples}], got {self.eval_ks}"
            )
        try:
            obj = make_objective(self.objective, **self.objective_params)
        except ValueError as e:
            which = "objective_params" if self.objective in objective_names() else "objective"
            raise ValueError(f"{which}: {e}") from None
        needs = GROUP_INPUTS.get(obj.spec.advantage)
        if needs is not None:
            raise ValueError(
                f"objective: {self.objective!r} uses the {obj.spec.advantage!r} estimator, whose group form needs "
                f"{needs} per group, which this trainer does not compute (verl does: see docs/integrations.md)"
            )
        try:
            obj.advantages(torch.zeros(1, self.group_size))
        except ValueError as e:
            raise ValueError(f"group_size: {e}") from None

    def make_objective(self) -> Objective:
        """The objective this config names, with its parameter overrides."""
        return make_objective(self.objective, **self.objective_params)


RL_PRESETS = {
    "smoke": RLConfig(
        sft="smoke",
        group_size=4,
        prompts_per_step=8,
        lr=3e-4,
        steps=20,
        eval_every=10,
        eval_samples=4,
        eval_ks=(1, 4),
        ckpt_every=10,
    ),
    "default": RLConfig(),
    # the lag study's cells (sims.llm.lag_study): countdown from the 'countdown' SFT warm start, fresh problems,
    # reward 1 for a correct expression and 0 otherwise; the learning rate decays (cosine) from 3e-4 to 3e-5 over
    # the 240 steps: at a constant rate, held-out pass@1 fell back from its best late in some runs
    "lag": RLConfig(
        sft="countdown",
        group_size=8,
        prompts_per_step=16,
        lr=3e-4,
        min_lr=3e-5,
        decay_steps=240,
        steps=240,
        reward="correct",
        problems="fresh",
        eval_every=20,
        eval_samples=4,
        eval_ks=(1, 4),
        diag_every=5,
        ckpt_every=240,
        num_threads=1,
    ),
}
# the lag study's first protocol (results/llm_lag_v1): the same at a constant learning rate
RL_PRESETS["lag_v1"] = dataclasses.replace(RL_PRESETS["lag"], sft="countdown_v1", min_lr=None, decay_steps=0)


@dataclass
class RLResult:
    """What :func:`train_rl` returns."""

    model: GPT
    task: Task
    config: RLConfig
    step: int
    """RL steps completed."""
    status: str
    """done, or interrupted (stop_after reached first)."""
    final_eval: dict | None
    """The last evaluation (None if none ran)."""
    history: list[dict]
    """One row per step: the rows of metrics.csv."""
    elapsed_s: float
    """Wall-clock seconds of RL (SFT excluded; resumed runs add up)."""


# ----------------------------------------------------------------------------- building blocks


def load_warm_start(cfg: RLConfig, out_dir: Path | None = None) -> tuple[GPT, Task]:
    """The SFT model and its task: loaded from ``cfg.sft`` as a file, or trained from the preset.

    A preset runs :func:`sims.llm.sft.train_sft` (in ``out_dir/sft`` with resumption
    when ``out_dir`` is given, so a resumed RL run does not retrain it).
    """
    if cfg.sft in SFT_PRESETS:
        sft_cfg = dataclasses.replace(
            SFT_PRESETS[cfg.sft], num_threads=cfg.num_threads, device=cfg.device, progress=cfg.progress
        )
        sft_dir = out_dir / "sft" if out_dir is not None else None
        res = train_sft(sft_cfg, out_dir=sft_dir, resume=sft_dir is not None)
        return res.model, res.task
    model, task, _ = load_sft(cfg.sft)
    return model, task


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (one entry of the lag ring)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def clip_fraction(obj: Objective, logp, logp_mu, adv, mask, logp_prox=None) -> float | None:
    r"""Fraction of sampled tokens whose gradient the objective clips, truncates or masks (``Objective.clipped``).

    PPO-type clips: the ratio :math:`u = \pi/\mu` per token (:math:`\pi/\pi_{prox}` for the
    decoupled objectives, which clip against the proximal policy) outside
    :math:`[1-\epsilon_l, 1+\epsilon_h]` (no lower end when :math:`\epsilon_l` is None);
    sequence-ratio objectives (GSPO) are counted per sequence. TOPR: negative-advantage
    tokens with :math:`u > 1`; M2PO: tokens its mask drops. None for objectives that clip nothing.

    Parameters
    ----------
    logp, logp_mu, mask : (N, T)
        Current and behaviour log-probabilities (nats) and the token mask.
    adv : (N,) or (N, T)
        The signal the loss received.
    logp_prox : (N, T), optional
        Proximal log-probabilities (required by objectives that need ``prox``).
    """
    if not obj.clips:
        return None
    anchor = logp_prox if "prox" in obj.needs else logp_mu
    out = obj.clipped(logp, anchor, adv, mask)  # (N, T)
    m = mask.bool()
    if obj.sequence_ratio:
        return float(out.any(-1).sum() / m.any(-1).sum().clamp(min=1))
    return float(out.sum() / m.sum().clamp(min=1))


STEP_METRICS = (
    "step",
    "loss",
    "reward",
    "score",
    "pass_rate",
    "len",
    "entropy",
    "kl",
    "kl_after",
    "ratio_mean",
    "ratio_max",
    "ess",
    "clip_frac",
    "grad_norm",
    "eta_fit",
    "eta_pred",
    "tokens",
    "tok_per_s",
    "time_s",
)
"""The per-step columns of an RL run's metrics.csv, in order (docs/llm_metrics.md defines each); the
evaluation's columns follow them."""


def _csv_columns(cfg: RLConfig) -> list[str]:
    ev = [f"eval/pass@{k}{s}" for k in cfg.eval_ks for s in ("", "_se")]
    ev += ["eval/score", "eval/score_se", "eval/len", "eval/finished", "eval/greedy_acc", "eval/greedy_acc_se"]
    return list(STEP_METRICS) + ev


def column_mean(rows: list[dict], key: str) -> float | None:
    """Mean of ``key`` over the rows where it is present and not None; None when there is none."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _seq_sum(x, mask) -> torch.Tensor:
    return torch.where(mask, x, 0.0).sum(1)  # (N,)


# ----------------------------------------------------------------------------- one step


@dataclass(kw_only=True)
class RLState(Progress):
    """What an RL run carries from step to step (:class:`sims.llm.rundir.Progress` and the states below);
    ``ckpt.pt`` holds all of it."""

    model: GPT
    """The policy being trained."""
    behaviour: GPT
    """Sampler, loaded with ``ring[0]`` at each step."""
    reference: GPT | None
    """Frozen SFT model, for objectives that need ``ref``."""
    optimizer: torch.optim.Optimizer
    generators: dict
    """``rl`` (prompts; samples on the CPU) and, on a GPU, ``rl_sample`` (samples there)."""
    ring: list
    """Weight snapshots, oldest first; ``ring[-1]`` = the current weights."""

    @classmethod
    def start(cls, cfg: RLConfig, obj: Objective, sft_model: GPT, ckpt: dict | None = None) -> "RLState":
        """Fresh copies of the SFT model (policy, behaviour, reference) and generators; restored from ``ckpt``."""
        dev = torch.device(cfg.device)
        model = copy.deepcopy(sft_model).to(dev)
        model.train()
        behaviour = copy.deepcopy(model).requires_grad_(False).eval()
        reference = copy.deepcopy(model).requires_grad_(False).eval() if "ref" in obj.needs else None
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        generators = {"rl": torch.Generator().manual_seed(cfg.seed)}  # prompts (and, on the CPU, samples)
        if dev.type != "cpu":  # sampling on the device draws from a generator there
            generators["rl_sample"] = torch.Generator(dev).manual_seed(cfg.seed)
        state = cls(model=model, behaviour=behaviour, reference=reference, optimizer=optimizer, generators=generators,
                    ring=[snapshot(model)])
        if ckpt is not None:
            restore_checkpoint(ckpt, model=model, optimizer=optimizer, generators=generators)
            state.resume(ckpt)
            state.ring = ckpt["ring"]
        return state


@dataclass
class Batch:
    """One step's sampled batch: ``N = B * G`` completions, grouped by prompt."""

    problems: list
    """The ``B`` problems."""
    roll: Rollout
    """Completions, behaviour log-probabilities (``roll.logp``) and mask, (N, Tc)."""
    scores: torch.Tensor
    """(N,) float64: the task's score (or 1 for correct, 0 otherwise)."""
    rewards: torch.Tensor
    """(N,) float64: scores mixed with the format score."""
    signal: torch.Tensor
    """(N,) float32: the objective's advantages of the rewards."""
    logp_ref: torch.Tensor | None
    """(N, Tc) reference log-probabilities (objectives that need ``ref``)."""


def draw_problems(task: Task, B: int, gen: torch.Generator, stream=None) -> list:
    """``B`` training problems: drawn with replacement from ``task.train`` with ``gen``, or the next of ``stream``."""
    if stream is None:
        idx = torch.randint(len(task.train), (B,), generator=gen).tolist()
        return [task.train[i] for i in idx]
    return stream.take(B)


def score_completions(cfg: RLConfig, task: Task, problems: list, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and rewards, (N,) float64 each, of completions ``texts`` grouped ``G`` by ``G`` per problem.

    ``reward = (1 - w) * score + w * format_score`` with ``w = cfg.format_weight``;
    ``score`` is 1 or 0 for ``cfg.reward = 'correct'``.
    """
    G = cfg.group_size
    scored = {}  # (prompt, completion) -> score: a sharp policy repeats its completions
    for j, t in enumerate(texts):
        if (j // G, t) not in scored:
            scored[j // G, t] = task.score(t, problems[j // G])
    scores = torch.tensor([scored[j // G, t] for j, t in enumerate(texts)], dtype=torch.float64)
    if cfg.reward == "correct":
        scores = (scores == 1.0).double()
    if cfg.format_weight > 0:
        fmt = torch.tensor([task.format_score(t) for t in texts], dtype=torch.float64)
        rewards = (1 - cfg.format_weight) * scores + cfg.format_weight * fmt
    else:
        rewards = scores
    return scores, rewards


def sample_batch(cfg: RLConfig, obj: Objective, task: Task, state: RLState, stream=None) -> Batch:
    """Steps 1 and 2: ``G`` completions per prompt from the lagged weights ``ring[0]``, scored, the signal."""
    dev, tok, B, G, tau = torch.device(cfg.device), task.tokenizer, cfg.prompts_per_step, cfg.group_size, cfg.temperature
    # 1. sample with the lagged weights: mu = pi_{max(0, step - L)}
    state.behaviour.load_state_dict(state.ring[0])
    problems = draw_problems(task, B, state.generators["rl"], stream)
    prompts = tok.encode_prompts([p.prompt for p in problems]).to(dev)  # (B, Tp)
    sample_gen = state.generators.get("rl_sample", state.generators["rl"])
    # the behaviour's whole distribution at every position, for objectives that average over it (score centering)
    keep = "expected" in obj.needs
    roll = state.behaviour.sample(prompts, G, task.max_new_tokens, tau, sample_gen, keep_dist=keep)  # N = B * G rows
    # 2. rewards and the objective's signal
    scores, rewards = score_completions(cfg, task, problems, tok.decode_batch(roll.tokens))
    signal = obj.advantages(rewards.view(B, G)).reshape(-1).float().to(dev)  # (N,)
    logp_ref = None
    if state.reference is not None:
        with torch.no_grad():
            logp_ref = state.reference.completion_logprobs(roll, tau)  # (N, Tc)
    return Batch(problems, roll, scores, rewards, signal, logp_ref)


def update_policy(cfg: RLConfig, obj: Objective, state: RLState, batch: Batch) -> dict:
    """Step 3: ``k = inner_steps`` optimizer steps of ``obj`` on ``batch``.

    Returns ``logp_start`` (the policy's log-probabilities before the first,
    detached, (N, Tc)) and the per-inner-step ``losses``, ``grad_norms`` and
    ``clips`` (:func:`clip_fraction`).
    """
    roll, tau, signal = batch.roll, cfg.temperature, batch.signal
    mask, logp_mu = roll.mask, roll.logp  # (N, Tc)
    logp_prox, logp_expected, losses, grad_norms, clips = None, None, [], [], []
    for inner in range(cfg.inner_steps):
        if "expected" in obj.needs:  # (N, Tc) each: E_{v~mu(.|s_t)} log pi(v|s_t) beside log pi(y_t|s_t)
            logp, logp_expected = state.model.completion_logprobs(roll, tau, expected=True)
        else:
            logp = state.model.completion_logprobs(roll, tau)  # (N, Tc)
        if inner == 0:
            logp_start = logp.detach()
            if "prox" in obj.needs:
                logp_prox = logp_start
        loss = obj.aggregate(
            obj.loss(logp, logp_mu, signal, mask, logp_ref=batch.logp_ref, logp_prox=logp_prox,
                     logp_expected=logp_expected), mask
        )
        gn = optimizer_step(state.model, state.optimizer, loss, cfg.grad_clip)
        losses.append(loss.item())
        grad_norms.append(gn.item())
        clips.append(clip_fraction(obj, logp, logp_mu, signal, mask, logp_prox))
    return {"logp_start": logp_start, "losses": losses, "grad_norms": grad_norms, "clips": clips}


def step_row(cfg: RLConfig, obj: Objective, step: int, batch: Batch, upd: dict, logp_after=None) -> dict:
    r"""Row ``step + 1`` of metrics.csv (docs/llm_metrics.md) without ``tok_per_s``, ``time_s`` and the evaluation.

    ``upd`` is :func:`update_policy`'s result; ``logp_after`` (N, Tc), the policy's
    log-probabilities after it, gives ``kl_after`` and ``eta_fit`` (blank without).
    With :math:`s = \sum_t (\log\pi_t - \log\mu)` per sequence: ``kl`` is
    :math:`-\bar s`, ``ess`` the effective sample size fraction of :math:`e^s`.
    """
    roll, scores, mask, logp_mu = batch.roll, batch.scores, batch.roll.mask, batch.roll.logp
    s_before = _seq_sum(upd["logp_start"] - logp_mu, mask).double()  # (N,) log pi_t / mu
    w = torch.exp(s_before - s_before.max())
    n_tok = int(mask.sum())
    row = {
        "step": step + 1,
        "loss": float(np.mean(upd["losses"])),
        "reward": batch.rewards.mean().item(),
        "score": scores.mean().item(),
        "pass_rate": (scores == 1.0).double().mean().item(),
        "len": roll.lengths.double().mean().item(),
        "entropy": (-_seq_sum(upd["logp_start"], mask).sum() / n_tok).item(),
        "kl": (-s_before).mean().item(),
        "kl_after": None,
        "ratio_mean": s_before.exp().mean().item(),
        "ratio_max": s_before.exp().max().item(),
        "ess": (w.sum() ** 2 / (len(w) * (w**2).sum())).item(),
        "clip_frac": None if upd["clips"][0] is None else float(np.mean(upd["clips"])),
        "grad_norm": float(np.mean(upd["grad_norms"])),
        "eta_fit": None,
        "eta_pred": None,
        "tokens": n_tok,
    }
    s_after = None
    if logp_after is not None:
        s_after = _seq_sum(logp_after - logp_mu, mask).double()  # (N,) log pi_{t+1} / mu
        row["kl_after"] = (-s_after).mean().item()
    if obj.family == "regression":
        row.update(_eta_columns(cfg, obj.params["beta"], batch, logp_after, s_after))
    return row


def _eta_columns(cfg: RLConfig, beta: float, batch: Batch, logp_after, s_after) -> dict:
    """``eta_pred`` (Lambert, from the signal) and, with ``logp_after``, ``eta_fit`` (from the realized log-ratios)."""
    adv = batch.signal.double().view(cfg.prompts_per_step, cfg.group_size)
    out = {"eta_pred": float(lambert_eta(adv, beta).mean())}
    if logp_after is not None:
        s_anchor = s_after if batch.logp_ref is None else _seq_sum(logp_after - batch.logp_ref, batch.roll.mask).double()
        out["eta_fit"] = float(fitted_eta(s_anchor.view(cfg.prompts_per_step, cfg.group_size), adv, beta).mean())
    return out


def lr_at(step: int, cfg: RLConfig) -> float:
    r"""Learning rate of step ``step`` (from 0): ``lr``, or with ``min_lr`` set the cosine
    :math:`\eta_{min} + \tfrac12(\eta - \eta_{min})(1 + \cos(\pi \min(1, s/S)))`, ``S = decay_steps``."""
    if cfg.min_lr is None:
        return cfg.lr
    frac = min(1.0, step / cfg.decay_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def rl_step(cfg: RLConfig, obj: Objective, task: Task, state: RLState, stream=None) -> tuple[Batch, dict]:
    """One RL step (the module docstring's 1 to 4) from ``state``, which it advances except for ``step``.

    Returns the batch and its row of metrics.csv, without ``time_s`` and the evaluation.
    """
    t0 = time.perf_counter()
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(state.step, cfg)
    batch = sample_batch(cfg, obj, task, state, stream)
    upd = update_policy(cfg, obj, state, batch)
    logp_after = None
    if (state.step + 1) % cfg.diag_every == 0 or state.step + 1 == cfg.steps:
        with torch.no_grad():
            logp_after = state.model.completion_logprobs(batch.roll, cfg.temperature)  # (N, Tc)
    # 4. push the new weights; keep L + 1 snapshots
    state.ring.append(snapshot(state.model))
    if len(state.ring) > cfg.lag + 1:
        state.ring.pop(0)
    row = step_row(cfg, obj, state.step, batch, upd, logp_after)
    row["tok_per_s"] = row["tokens"] * cfg.inner_steps / (time.perf_counter() - t0)
    return batch, row


# ----------------------------------------------------------------------------- the run


RESUME_IGNORES = {"progress", "out_dir", "tensorboard_dir", "steps", "ckpt_every"}
"""Fields of :class:`RLConfig` that may change on resume: they change neither the trajectory nor its record."""


def _run_dir(cfg: RLConfig, resume: bool, overwrite: bool, stop_after) -> RunDir:
    """:func:`check_run`'s checks; the run's folder."""
    require_config(cfg, RLConfig, "train_rl", "RL_PRESETS")
    run = RunDir(cfg.out_dir, cfg.tensorboard_dir, extra_files=SFT_FILES, extra_folders=("sft",))
    run.check(resume=resume, overwrite=overwrite, stop_after=stop_after, device=cfg.device)
    return run


def check_run(cfg: RLConfig, *, resume=False, overwrite=False, stop_after=None) -> Path | None:
    """The checks :func:`train_rl` makes before reading any checkpoint; returns ``cfg.out_dir`` as a Path.

    UsageError for a bad ``out_dir`` or ``stop_after``, another run's files there,
    CUDA requested but absent; ImportError (naming the extra) for a
    ``tensorboard_dir`` without TensorBoard installed.
    """
    return _run_dir(cfg, resume, overwrite, stop_after).out_dir


def _resume_checkpoint(run: RunDir, cfg: RLConfig) -> dict | None:
    """The run's checkpoint to continue: same config outside ``RESUME_IGNORES``, no more steps done than ``cfg.steps``."""
    ckpt = run.resume_checkpoint(cfg, "sims.llm.rl", RESUME_IGNORES)
    if ckpt is not None and cfg.steps < ckpt["step"]:
        raise UsageError(
            f"steps: the run in {run.out_dir} has done {ckpt['step']} steps, more than {cfg.steps}; pass "
            f"--steps {ckpt['step']} or more to continue it"
        )
    return ckpt


def _evaluate(cfg: RLConfig, task: Task, state: RLState, row: dict) -> None:
    """pass@k on the held-out problems (sampling seed ``seed + 1``) into ``row`` and ``state.final_eval``."""
    state.model.eval()
    state.final_eval = evaluate(state.model, task, n_samples=cfg.eval_samples, ks=cfg.eval_ks, temperature=1.0,
                                seed=cfg.seed + 1)
    state.model.train()
    row.update({f"eval/{k}": v for k, v in state.final_eval.items()})


def train_rl(
    cfg: RLConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    warm_start: tuple[GPT, Task] | None = None,
    on_step=None,
) -> RLResult:
    """Run ``cfg.steps`` RL steps from the SFT warm start.

    Parameters
    ----------
    cfg : RLConfig
    resume : bool
        Continue from ``cfg.out_dir/ckpt.pt`` when it exists. Its config must equal
        ``cfg`` up to ``RESUME_IGNORES`` (progress, output places, ``ckpt_every``
        and the stopping rule ``steps``); ``cfg.steps`` may exceed the steps done,
        which extends a finished run (the learning-rate schedule does not depend on
        ``steps``, so the extended run is the straight run of ``cfg.steps``).
    overwrite : bool
        Remove the earlier run's files in ``cfg.out_dir`` (metrics.csv, ckpt.pt,
        summary.json, its ``sft/`` warm start) and its TensorBoard events, and
        start over. Without it (or ``resume``) such a folder is refused.
    stop_after : int, optional
        End (status ``interrupted``) once this many steps are done, as a kill would.
    warm_start : (GPT, Task), optional
        SFT model and task to start from instead of ``cfg.sft`` (not modified: the
        trainer copies the model).
    on_step : callable, optional
        ``on_step(step, rollout, behaviour_state, model)`` after each step's update:
        ``step`` counts from 0, ``rollout`` is the batch sampled with the weights
        ``behaviour_state``; for tests and diagnostics.

    Returns
    -------
    RLResult

    Raises
    ------
    theory.outputs.UsageError
        Before anything is trained, written or removed: a bad ``out_dir``, another
        run's files there, an unreadable or foreign checkpoint on ``resume``, a
        config that differs from the checkpoint's, ``steps`` below the steps
        already done, a ``cfg.sft`` file that is not an SFT checkpoint, CUDA
        requested but absent.
    """
    run = _run_dir(cfg, resume, overwrite, stop_after)
    ckpt = _resume_checkpoint(run, cfg) if resume else None
    if warm_start is None and cfg.sft not in SFT_PRESETS:
        warm_start = load_warm_start(cfg)  # a bad file is refused before anything is removed
    if overwrite:
        run.clear()
    torch.set_num_threads(cfg.num_threads)
    obj = cfg.make_objective()
    sft_model, task = warm_start if warm_start is not None else load_warm_start(cfg, run.out_dir)
    state = RLState.start(cfg, obj, sft_model, ckpt)
    stream = task.stream(cfg.seed) if cfg.problems == "fresh" else None
    if stream is not None and state.step:
        stream.skip(state.step * cfg.prompts_per_step)  # the problems the resumed run has trained on
    cfg_data = dataclasses.asdict(cfg)
    run.open(_csv_columns(cfg), state.history, first_step=state.step + 1)
    status = "done"
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"rl {cfg.objective} L={cfg.lag}", disable=not cfg.progress,
               leave=False)
    while state.step < cfg.steps:
        t0 = time.perf_counter()
        batch, row = rl_step(cfg, obj, task, state, stream)
        state.step += 1
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            _evaluate(cfg, task, state, row)
            bar.set_postfix(reward=f"{row['reward']:.3f}", pass1=f"{state.final_eval['pass@1']:.3f}")
        state.record(row, time.perf_counter() - t0)
        run.log(row)
        bar.update(1)
        if on_step is not None:
            on_step(state.step - 1, batch.roll, state.behaviour.state_dict(), state.model)
        if state.step % cfg.ckpt_every == 0 or state.step == cfg.steps:
            run.save_checkpoint(step=state.step, model=state.model, optimizer=state.optimizer,
                                generators=state.generators, ring=state.ring, config=cfg_data, extra=state.extra())
        if stop_after is not None and state.step >= stop_after and state.step < cfg.steps:
            status = "interrupted"
            break
    bar.close()
    run.close()
    result = RLResult(state.model, task, cfg, state.step, status, state.final_eval, state.history, state.elapsed)
    if status == "done":
        run.write_summary(summary(result))
    return result


def summary(result: RLResult) -> dict:
    """Plain-data account of a run: its last evaluation and the mean of each metric over the last 10 steps."""
    tail = result.history[-10:]
    keys = [k for k in _csv_columns(result.config) if not k.startswith("eval/") and k != "step"]
    return {
        "objective": result.config.objective,
        "lag": result.config.lag,
        "step": result.step,
        "status": result.status,
        "elapsed_s": result.elapsed_s,
        "final_eval": result.final_eval,
        "last10": {k: column_mean(tail, k) for k in keys},
        "config": dataclasses.asdict(result.config),
    }


def parse_objective_params(text: str) -> dict:
    """``beta=0.05,delta=2`` or a JSON object -> dict (numbers parsed, ``None`` for none/null).

    Raises ``argparse.ArgumentTypeError`` (the parser's one-line error) for an item
    without ``=``, an empty name, or a JSON text that is not an object.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"not a JSON object ({e.msg} at character {e.pos}): {text!r}") from None
        if not isinstance(data, dict):
            raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
        return dict(data)
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected name=value[,name=value...], got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        if not k:
            raise argparse.ArgumentTypeError(f"expected name=value, got {item!r} (no name)")
        if v.lower() in ("none", "null"):
            out[k] = None
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


@cli_main
def main(argv=None) -> dict:
    """``python -m sims.llm.rl``: one RL run; prints its summary as JSON."""
    import_user_modules(argv if argv is not None else sys.argv[1:], "python -m sims.llm.rl")
    pre = Parser(prog="python -m sims.llm.rl", add_help=False)
    pre.add_argument("--preset", choices=sorted(RL_PRESETS), default="default")
    base = RL_PRESETS[pre.parse_known_args(argv)[0].preset]
    p = Parser(prog="python -m sims.llm.rl", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(RL_PRESETS), default="default",
                   help="base config; the flags below change single fields (default: 'default'; choices: "
                   + ", ".join(sorted(RL_PRESETS)) + ")")
    add_run_arguments(p, ", except --steps, which may grow to extend a finished run",
                      "metrics.csv, ckpt.pt, summary.json, sft/, TensorBoard events")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import this module first (repeatable): a file of yours that registers objectives with "
                   "theory.objectives.register_objective, so that --objective can name them (default: none)")
    add_dataclass_arguments(
        p,
        RLConfig,
        base,
        types={"objective_params": parse_objective_params},  # a mapping flag: name=value pairs or JSON
        choices={"objective": objective_names()},
    )
    args, cfg = config_from_args(p, argv, RLConfig, base)
    try:
        try:
            check_run(cfg, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after)
        except ImportError as e:  # the tensorboard extra is missing
            raise UsageError(f"tensorboard_dir: {e}") from None
        check_sft_arg(cfg.sft)
        if cfg.out_dir is None:
            note("python -m sims.llm.rl: no --out-dir given, so nothing will be saved (no metrics.csv, ckpt.pt, "
                 "summary.json)")
        res = train_rl(cfg, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after)
    except UsageError as e:
        raise usage_error(e, RLConfig) from None
    out = summary(res)
    print(json.dumps({k: v for k, v in out.items() if k != "config"}, indent=2))
    return out


if __name__ == "__main__":
    main()
