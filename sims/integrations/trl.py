r"""TRL integration: ``GRPOTrainer`` with any zoo objective, and the eta diagnostics in its logs.

:class:`ZooGRPOTrainer` subclasses TRL's ``GRPOTrainer`` (TRL 1.16 has no loss
registry; overriding the loss in a subclass is its documented extension point) and
changes two things, inheriting generation, rewards, reference and old log-probs,
buffering, gradient accumulation and logging:

* **advantages** — the zoo objective's estimator (``Objective.advantages``) on the
  weighted sum of the reward functions, per group of ``num_generations``; this
  replaces TRL's ``scale_rewards`` / ``multi_objective_aggregation``;
* **loss** — the zoo's loss function (``Objective.loss``) on TRL's per-token
  log-probabilities, reduced with the objective's aggregation (TRL's normalizers:
  ``token-mean`` over the generation batch's tokens like TRL's ``dapo``, the others
  per micro-batch divided by the gradient-accumulation steps like ``grpo``).

The behaviour log-probabilities :math:`\mu` are TRL's ``old_per_token_logps`` (the
policy that generated the batch), or the detached current ones when TRL skips them
(one gradient step per generation: the first pass is on-policy). TRL's ``beta``
adds TRL's k3 penalty to the reference for token-level objectives (A*-PO uses the
reference as its anchor instead). vLLM importance-sampling ratios, when present,
multiply the loss as in TRL. Unsupported (refused at construction): the entropy
bonus, ``top_entropy_quantile < 1``, and ``off_policy_mask_threshold`` other than the objective's own
``opsm_delta`` (``grpo_opsm``, ``theory.zoo_corrections``: the loss applies the mask).

:data:`TRL_LOSS_TYPES` lists the zoo objectives that TRL ships as loss types and the
``GRPOConfig`` settings under which TRL's loss is the zoo's (tested to 1e-6).
Logged metrics: docs/integrations.md; the off-policy readings and the eta (``zoo/*``): docs/diagnostics.md.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from . import require

TRL_VERSION = require("trl")

import torch  # noqa: E402
from trl import GRPOTrainer  # noqa: E402

from theory import losses as L  # noqa: E402
from theory.objectives import Objective, make_objective  # noqa: E402
from theory.recipes import TRL_LOSS_TYPES  # noqa: E402  (re-exported)

from .diagnostics import batch_sums, predicts_eta, readings, temperature  # noqa: E402
from .eta import group_regime, lambert_eta  # noqa: E402

__all__ = ["TRL_VERSION", "TRL_LOSS_TYPES", "ZooGRPOTrainer"]

# TRL_LOSS_TYPES (from theory.recipes, a live view of the specs' ``trl`` recipes): zoo objective -> (TRL
# GRPOConfig settings, zoo parameters) under which TRL's loss is the zoo's. TRL's group advantage divides by
# ``std + 1e-4`` (the zoo's ``eps``); TRL's CISPO caps the ratio at ``epsilon_high`` itself (the zoo caps at
# ``1 + eps_high``); TRL's SAPO temperatures ``sapo_temperature_pos`` / ``sapo_temperature_neg`` are the zoo's
# ``tau_pos`` / ``tau_neg``.

_MM_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
            "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")


class ZooGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` training a zoo objective (module docstring).

    Parameters
    ----------
    *args, **kwargs
        As ``trl.GRPOTrainer`` (``model``, ``reward_funcs``, ``args`` a ``GRPOConfig``, ...);
        ``GRPOConfig.loss_type`` is ignored.
    objective : str or Objective
        A zoo objective name (``theory.objectives.OBJECTIVES``) or an :class:`Objective`.
    objective_params : mapping, optional
        Overrides of the objective's published parameters (``make_objective(objective, **objective_params)``).

    Attributes
    ----------
    zoo_objective : Objective
        The objective being trained.

    Raises
    ------
    ValueError
        For an unknown objective (listing the valid names) or a TRL option the zoo loss does not support.
    """

    def __init__(self, *args, objective: str | Objective = "shifted_regression",
                 objective_params: Mapping[str, Any] | None = None, **kwargs):
        if isinstance(objective, Objective):
            if objective_params:
                raise ValueError("pass parameters either in the Objective or in objective_params, not both")
            obj = objective
        else:
            obj = make_objective(objective, **dict(objective_params or {}))
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        if config is not None:  # fail before TRL loads anything
            self._check_config(obj, config)
        super().__init__(*args, **kwargs)
        self._check_config(obj, self.args)
        self.zoo_objective = obj
        self._zoo_rewards = None
        self._zoo_pending: dict[str, dict] = {}

    @staticmethod
    def _check_config(obj: Objective, args) -> None:
        if args.entropy_coef != 0.0 or args.use_adaptive_entropy:
            raise ValueError("ZooGRPOTrainer does not add TRL's entropy bonus: set entropy_coef=0")
        if args.top_entropy_quantile < 1.0:
            raise ValueError("ZooGRPOTrainer does not support top_entropy_quantile < 1")
        opsm = args.off_policy_mask_threshold
        if opsm is not None and opsm != obj.params.get("opsm_delta"):
            raise ValueError("ZooGRPOTrainer applies off_policy_mask_threshold only as the objective's own opsm_delta "
                             "(e.g. objective 'grpo_opsm'): set them equal, or off_policy_mask_threshold=None")
        if "expected" in obj.needs:
            raise ValueError(f"objective {obj.name!r} needs the sampler's distribution at every position "
                             "(logp_expected), which GRPOTrainer does not keep (only the sampled tokens' log-probs)")
        if "ref" in obj.needs and args.beta == 0.0:
            raise ValueError(f"objective {obj.name!r} regresses on log(pi/pi_ref): set beta > 0 in GRPOConfig so "
                             "that TRL loads the reference model (it is not used as a KL coefficient here)")
        if args.beta != 0.0 and obj.level == "sequence" and "ref" not in obj.needs:
            raise ValueError(f"objective {obj.name!r} is its own regularizer (beta log(pi/mu)): set beta=0 "
                             "(TRL's KL to the reference is added to token-level objectives only)")

    # -- advantages ------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._zoo_rewards = rewards_per_func  # (N, n_funcs), gathered over processes
        return rewards_per_func

    def _zoo_group_advantages(self, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The zoo objective's advantages of every group of the generation batch, shape (N/G, G), and unscorables."""
        rpf = self._zoo_rewards
        G = self.num_generations if mode == "train" else self.num_generations_eval
        unscorable = torch.isnan(rpf).all(1)
        r = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(1).to(torch.float64)
        r[unscorable] = torch.nan
        grouped = r.view(-1, G)
        fill = torch.nan_to_num(torch.nanmean(grouped, -1, keepdim=True), nan=0.0)  # unscorable: no effect on the mean
        grouped = torch.where(torch.isnan(grouped), fill.expand_as(grouped), grouped)
        adv = self.zoo_objective.advantages(grouped)
        return torch.where(unscorable.view(-1, G), torch.zeros_like(adv), adv), unscorable.view(-1, G)

    def _zoo_advantages(self, output: dict, mode: str) -> torch.Tensor:
        """The zoo objective's advantages for this process's rows, shape (B,); logs the predicted eta."""
        adv, unscorable = self._zoo_group_advantages(mode)
        obj = self.zoo_objective
        if predicts_eta(obj):  # predicted eta and regime of every scorable group (sims.integrations.eta)
            keep = ~unscorable.any(-1)
            if keep.any():
                beta = temperature(obj)
                self._metrics[mode]["zoo/eta_lambert"].append(float(lambert_eta(adv[keep].cpu(), beta).mean()))
                self._metrics[mode]["zoo/regime"].append(float(group_regime(adv[keep].cpu(), beta).mean()))
        B = output["advantages"].shape[0]
        start = self.accelerator.process_index * B
        return adv.reshape(-1)[start:start + B].to(output["advantages"].dtype)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        adv = self._zoo_advantages(output, mode)
        output["advantages"] = adv
        B = adv.shape[0]
        G = self.num_generations if mode == "train" else self.num_generations_eval
        start = self.accelerator.process_index * B
        output["zoo_row"] = torch.arange(B, device=adv.device)
        output["zoo_version"] = torch.full((B,), self.state.global_step, device=adv.device)  # the policy mu's step
        if predicts_eta(self.zoo_objective) and B % G == 0 and start % G == 0:
            self._zoo_pending[mode] = {"lmu": torch.full((B,), math.nan, dtype=torch.float64),
                                       "adv": adv.detach().to("cpu", torch.float64), "G": G}
        else:
            self._zoo_pending.pop(mode, None)
        return output

    # -- loss --------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        obj = self.zoo_objective
        mode = "train" if self.model.training else "eval"
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logp, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled, **{k: inputs.get(k) for k in _MM_KEYS})
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        m = mask.to(logp.dtype)  # (B, T)
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old
        adv = inputs["advantages"]  # (B,) or (B, T)
        if obj.level == "sequence" and adv.dim() == 2:
            adv = (adv * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        ref = inputs.get("ref_per_token_logps")
        if "prox" in obj.needs:
            loss = obj.loss(logp, inputs.get("sampling_per_token_logps", old), adv, m, logp_prox=old)
        else:
            loss = obj.loss(logp, old, adv, m, logp_ref=ref)

        is_ratio = inputs.get("importance_sampling_ratio")
        if is_ratio is not None:  # vLLM sampling correction, as TRL applies it
            loss = loss * (is_ratio.squeeze(-1) if loss.dim() == 1 and is_ratio.shape[-1] == 1 else is_ratio)
        kl = None
        if self.beta != 0.0 and "ref" not in obj.needs:
            kl = L.kl_estimate(ref - logp, "k3")  # TRL's per-token k3 to the reference
            if self.args.use_bias_correction_kl:
                log_ratio = logp - old
                if self.importance_sampling_level == "sequence":
                    log_ratio = ((log_ratio * m).sum(-1) / m.sum(-1).clamp_min(1.0)).unsqueeze(-1)
                kl = kl * torch.exp(log_ratio)
            loss = loss + self.beta * kl

        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        agg = obj.aggregation
        if loss.dim() == m.dim() and agg == "sequence":
            agg = "seq-mean-token-mean"  # a per-token loss (e.g. a token-level IS ratio) on a sequence objective
        if agg == "token-mean":  # the generation batch's token mean, as TRL's dapo
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            value = L.aggregate(loss, m, "token-mean") * m.sum().clamp_min(1.0) / normalizer
        else:
            constant = None
            if agg == "seq-mean-token-sum-norm":
                constant = obj.params.get("norm_constant") or float(self.max_completion_length)
            value = L.aggregate(loss, m, agg, constant=constant) / accumulation
        if self.aux_loss_enabled:
            value = value + self.router_aux_loss_coef * aux_loss / accumulation
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        with torch.no_grad():
            self._log_metrics(mode, inputs, logp.detach(), old, adv, m, entropies, kl)
        return value

    # -- metrics -----------------------------------------------------------------

    def _global_mean(self, values: torch.Tensor, weights: torch.Tensor) -> float:
        totals = self.accelerator.reduce(torch.stack([(values * weights).sum(), weights.sum()]).float(),
                                         reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()

    def _log_metrics(self, mode, inputs, logp, old, adv, m, entropies, kl):
        obj, metrics = self.zoo_objective, self._metrics[mode]
        metrics["entropy"].append(self._global_mean(entropies, m))
        if kl is not None:
            metrics["kl"].append(self._global_mean(kl.expand_as(m), m))
        metrics["zoo/ratio_mean"].append(self._global_mean(torch.exp((logp - old).clamp(max=20.0)), m))
        if obj.clips:  # tokens whose gradient the loss clips, truncates or masks (Objective.clipped)
            clipped = obj.clipped(logp, old, adv, m).to(m.dtype)
            metrics["zoo/clip_ratio"].append(self._global_mean(clipped, m))
        if "zoo_version" in inputs:  # optimizer steps since the policy that generated the rows
            stale = (self.state.global_step - inputs["zoo_version"]).to(m.dtype)
            metrics["zoo/staleness"].append(self._global_mean(stale, torch.ones_like(stale)))
        sums = self.accelerator.reduce(batch_sums(logp, old, m, adv), reduction="sum")  # every process's rows
        for name, value in readings(sums, temperature(obj), obj.level).items():  # sims.integrations.diagnostics
            metrics[f"zoo/{name}"].append(value)
        if predicts_eta(obj):
            self._log_behaviour_weighted_eta(mode, inputs, old, m)

    def _log_behaviour_weighted_eta(self, mode, inputs, old, m):
        """``zoo/eta_lambert_mu`` once every row of this process's generation batch has passed through the loss."""
        pending = self._zoo_pending.get(mode)
        if pending is None or "zoo_row" not in inputs:
            return
        pending["lmu"][inputs["zoo_row"].cpu()] = (old * m).sum(-1).to("cpu", torch.float64)
        if torch.isnan(pending["lmu"]).any():
            return
        G = pending["G"]
        eta = lambert_eta(pending["adv"].view(-1, G), temperature(self.zoo_objective),
                          logp_mu_seq=pending["lmu"].view(-1, G))
        eta = self.accelerator.gather_for_metrics(torch.as_tensor(eta, device=m.device))
        self._metrics[mode]["zoo/eta_lambert_mu"].append(eta.mean().item())
        del self._zoo_pending[mode]
