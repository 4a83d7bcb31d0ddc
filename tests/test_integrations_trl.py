"""TRL integration: TRL's loss types equal the zoo's; ZooGRPOTrainer trains a zoo objective on CPU, offline.

Skipped unless TRL is installed (``pip install torch==2.13.0 -e ".[trl]"``). The model is
a tiny randomly initialised ``LlamaForCausalLM`` with a character-level
``PreTrainedTokenizerFast``, both built here; nothing is downloaded.
"""

from __future__ import annotations

import math
import os

import pytest

pytest.importorskip("trl", reason='TRL is not installed: pip install torch==2.13.0 -e ".[trl]"')

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_k, "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import sims.integrations as integ  # noqa: E402
from sims.integrations.diagnostics import offpolicy_readings, reading_names, temperature  # noqa: E402
from sims.integrations.trl import TRL_LOSS_TYPES, ZooGRPOTrainer  # noqa: E402
from theory.zoo import BUILTIN_SPECS  # noqa: E402
from theory.objectives import make_objective  # noqa: E402

TOL = 1e-6


#: tiny CPU tensors: one intra-op thread in this module (conftest.single_torch_thread)
pytestmark = pytest.mark.usefixtures("single_torch_thread")
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = list("0123456789+=")


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                  unk_token="<unk>")
    out.padding_side = "left"
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random Llama saved locally (TRL reloads the reference model from its path when beta != 0)."""
    torch.manual_seed(0)
    tokenizer = char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    model.generation_config.bos_token_id = 1
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


PROMPTS = [f"{a}+{b}=" for a in range(4) for b in range(4)]


def addition_reward(completions, prompts, **kwargs):
    """1 for the right sum at the start of the completion, 0.5 if its first digit appears, else 0."""
    out = []
    for p, c in zip(prompts, completions):
        a, b = p[:-1].split("+")
        ans = str(int(a) + int(b))
        out.append(1.0 if c.startswith(ans) else 0.5 if ans[0] in c else 0.0)
    return out


def grpo_config(out_dir, **kw) -> GRPOConfig:
    base = dict(output_dir=str(out_dir), use_cpu=True, report_to="none", max_steps=1, per_device_train_batch_size=8,
                gradient_accumulation_steps=1, num_generations=4, max_completion_length=6, learning_rate=1e-2,
                logging_steps=1, save_strategy="no", bf16=False, fp16=False, dataloader_num_workers=0, seed=0,
                disable_tqdm=True)
    base.update(kw)
    return GRPOConfig(**base)


def make_trainer(cls, model, model_dir, out_dir, **kw):
    extra = {k: kw.pop(k) for k in ("objective", "objective_params") if k in kw}
    trainer = cls(model=model, reward_funcs=[addition_reward], args=grpo_config(out_dir, **kw),
                  train_dataset=Dataset.from_dict({"prompt": PROMPTS}), processing_class=char_tokenizer(), **extra)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    return trainer


def make_inputs(trainer, seed, B=8, P=3, T=6, beta=0.0):
    """A TRL micro-batch: ragged completions, off-policy old log-probs, reference log-probs when beta != 0."""
    g = torch.Generator().manual_seed(seed)
    n_special = len(SPECIALS)
    prompt_ids = torch.randint(n_special, n_special + len(CHARS), (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[0, 0] = 0
    completion_ids = torch.randint(n_special, n_special + len(CHARS), (B, T), generator=g)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    lens[0] = T
    completion_mask = (torch.arange(T)[None] < lens[:, None]).long()
    inputs = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                  completion_mask=completion_mask, advantages=torch.randn(B, generator=g),
                  num_items_in_batch=completion_mask.sum())
    with torch.no_grad():
        ids = torch.cat([prompt_ids, completion_ids], 1)
        am = torch.cat([prompt_mask, completion_mask], 1)
        logp, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, am, T)
    m = completion_mask.float()
    inputs["old_per_token_logps"] = (logp + 0.5 * torch.randn(B, T, generator=g)) * m
    if beta:
        inputs["ref_per_token_logps"] = (logp + 0.3 * torch.randn(B, T, generator=g)) * m
    return inputs


def loss_and_grads(trainer, model, inputs):
    model.zero_grad()
    loss = trainer._compute_loss(model, inputs)
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]


CASES = [(name, 0.0) for name in TRL_LOSS_TYPES] + [("grpo", 0.04), ("dapo", 0.04), ("sapo", 0.04)]


@pytest.mark.parametrize("name,beta", CASES, ids=[f"{n}-beta{b}" for n, b in CASES])
def test_trl_loss_type_equals_zoo(name, beta, model_dir, tmp_path):
    trl_cfg, zoo_params = TRL_LOSS_TYPES[name]
    model = LlamaForCausalLM.from_pretrained(model_dir)
    builtin = make_trainer(GRPOTrainer, model, model_dir, tmp_path / "trl", beta=beta, **trl_cfg)
    zoo = make_trainer(ZooGRPOTrainer, model, model_dir, tmp_path / "zoo", beta=beta, objective=name,
                       objective_params=zoo_params, **{k: v for k, v in trl_cfg.items() if k != "loss_type"})
    for seed in range(2):
        inputs = make_inputs(builtin, seed, beta=beta)
        v_trl, g_trl = loss_and_grads(builtin, model, inputs)
        v_zoo, g_zoo = loss_and_grads(zoo, model, inputs)
        assert abs(v_trl - v_zoo) <= TOL, (name, beta, seed, v_trl, v_zoo)
        assert max((a - b).abs().max().item() for a, b in zip(g_trl, g_zoo)) <= TOL, (name, beta, seed)


def test_sapo_temperatures_are_trls(model_dir, tmp_path):
    """TRL's sapo_temperature_pos / _neg are the zoo's tau_pos / tau_neg (here away from the published values)."""
    trl_cfg = dict(TRL_LOSS_TYPES["sapo"][0], sapo_temperature_pos=0.5, sapo_temperature_neg=2.0)
    model = LlamaForCausalLM.from_pretrained(model_dir)
    builtin = make_trainer(GRPOTrainer, model, model_dir, tmp_path / "trl", **trl_cfg)
    zoo = make_trainer(ZooGRPOTrainer, model, model_dir, tmp_path / "zoo", objective="sapo",
                       objective_params=dict(TRL_LOSS_TYPES["sapo"][1], tau_pos=0.5, tau_neg=2.0))
    for seed in range(2):
        inputs = make_inputs(builtin, seed)
        inputs["advantages"][:2] = 0.0  # A = 0 takes the negative temperature in both
        v_trl, g_trl = loss_and_grads(builtin, model, inputs)
        v_zoo, g_zoo = loss_and_grads(zoo, model, inputs)
        assert abs(v_trl - v_zoo) <= TOL, (seed, v_trl, v_zoo)
        assert max((a - b).abs().max().item() for a, b in zip(g_trl, g_zoo)) <= TOL, seed


def test_the_zoo_advantage_is_trls_under_the_mapping(model_dir, tmp_path):
    """One training step with objective grpo (eps = 1e-4): the zoo's group advantage equals TRL's."""
    seen = []

    class Spy(ZooGRPOTrainer):
        def _zoo_advantages(self, output, mode):
            new = super()._zoo_advantages(output, mode)
            seen.append((output["advantages"].clone(), new))
            return new

    trainer = make_trainer(Spy, LlamaForCausalLM.from_pretrained(model_dir), model_dir, tmp_path,
                           objective="grpo", objective_params={"eps": 1e-4})
    trainer.train()
    assert seen
    for trl_adv, zoo_adv in seen:
        assert (trl_adv - zoo_adv).abs().max().item() <= TOL


def test_zoo_objective_trains_end_to_end(model_dir, tmp_path):
    """The shifted regression on the addition task, 3 steps on CPU: weights move and eta is logged."""
    model = LlamaForCausalLM.from_pretrained(model_dir)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(ZooGRPOTrainer, model, model_dir, tmp_path, objective="shifted_regression",
                           max_steps=3, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                           num_iterations=2)
    trainer.train()
    assert trainer.state.global_step == 3
    assert max((a - b).abs().max().item() for a, b in zip(before, trainer.model.parameters())) > 0
    logs = [h for h in trainer.state.log_history if "loss" in h]
    fit = [h["zoo/eta_fit"] for h in logs]
    assert len(fit) == 3 and all(math.isfinite(x) for x in fit)
    lam = [h["zoo/eta_lambert"] for h in logs if "zoo/eta_lambert" in h]
    assert lam and all(x >= 1.0 - 1e-6 for x in lam)  # the shifted regression: eta >= delta = 1
    assert all(math.isfinite(h["zoo/eta_lambert_mu"]) for h in logs if "zoo/eta_lambert_mu" in h)
    delta = make_objective("shifted_regression").params["delta"]
    assert all(h["zoo/adv_over_beta"] == pytest.approx(delta, rel=1e-5) for h in logs)  # mean A = delta beta
    assert all(h["zoo/regime"] == 1.0 for h in logs if "zoo/regime" in h)  # eta >= delta > 0: positive regime
    # num_iterations = 2, steps_per_generation = gradient_accumulation_steps: mu is 0, then 1 optimizer step old
    assert [h["zoo/staleness"] for h in logs] == [0.0, 1.0, 0.0]
    assert all(h["zoo/k3_kl"] >= 0 and 0 < h["zoo/ess"] <= 1 + 1e-12 for h in logs)
    fresh = [h for h in logs if h["zoo/staleness"] == 0]  # pi = mu on a generation batch's first pass
    assert all(abs(h["zoo/kl"]) < 1e-6 and abs(h["zoo/chi2_token"]) < 1e-5 for h in fresh)


def loss_readings(trainer, model, inputs) -> dict[str, float]:
    """The metrics one _compute_loss call logs."""
    trainer._metrics["train"].clear()
    trainer._compute_loss(model, inputs)
    return {k: v[-1] for k, v in trainer._metrics["train"].items()}


def test_every_objective_reports_the_documented_readings(model_dir, tmp_path):
    """docs/diagnostics.md's TRL keys for every zoo objective, equal to sims.integrations.diagnostics."""
    model = LlamaForCausalLM.from_pretrained(model_dir)
    plain = make_trainer(ZooGRPOTrainer, model, model_dir, tmp_path / "plain", objective="pg")
    with_ref = make_trainer(ZooGRPOTrainer, model, model_dir, tmp_path / "ref", beta=0.04, objective="astar_po")
    for name in sorted(s.name for s in BUILTIN_SPECS):
        obj = make_objective(name)
        trainer = with_ref if "ref" in obj.needs else plain
        trainer.zoo_objective = obj
        inputs = make_inputs(trainer, 0, beta=trainer.beta)
        if obj.spec.signal != "adv":  # AWR, TPO: the signal is a nonnegative weight
            inputs["advantages"] = inputs["advantages"].abs()
        trainer.state.global_step = 3
        inputs["zoo_version"] = torch.ones(8, dtype=torch.long)  # generated 2 optimizer steps ago
        got = loss_readings(trainer, model, inputs)
        per_step = [n for n in reading_names(obj) if n not in ("eta_lambert", "regime")]  # those: per generation
        expect = {"entropy", "zoo/ratio_mean", "zoo/staleness"} | {f"zoo/{n}" for n in per_step}
        expect |= {"zoo/clip_ratio"} if obj.clips else set()
        expect |= {"kl"} if trainer.beta and "ref" not in obj.needs else set()
        assert set(got) == expect, name
        assert got["zoo/staleness"] == 2.0
        m = inputs["completion_mask"]
        with torch.no_grad():
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            am = torch.cat([inputs["prompt_mask"], m], 1)
            logp, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, am, m.shape[1])
        want = offpolicy_readings(logp, inputs["old_per_token_logps"], m, inputs["advantages"], temperature(obj),
                                  obj.level)
        assert {k: got[f"zoo/{k}"] for k in want} == pytest.approx(want, rel=1e-5, abs=1e-6), name


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_unknown_objective_lists_the_valid_names(model_dir, tmp_path):
    with pytest.raises(ValueError, match="valid objectives: .*oapl") as err:
        ZooGRPOTrainer(model=model_dir, reward_funcs=[addition_reward], args=grpo_config(tmp_path),
                       objective="oapl2")
    assert "oapl2" in str(err.value)


@pytest.mark.parametrize("objective,kw,match", [
    ("oapl", {"entropy_coef": 0.01}, "entropy"),
    ("oapl", {"beta": 0.04}, "own regularizer"),
    ("astar_po", {}, "beta > 0"),
    ("grpo", {"top_entropy_quantile": 0.5}, "top_entropy_quantile"),
])
def test_unsupported_settings_are_refused(objective, kw, match, model_dir, tmp_path):
    with pytest.raises(ValueError, match=match):
        ZooGRPOTrainer(model=model_dir, reward_funcs=[addition_reward], args=grpo_config(tmp_path, **kw),
                       objective=objective)


def test_version_outside_the_tested_range(monkeypatch):
    monkeypatch.setattr(integ.importlib.metadata, "version", lambda name: "1.15.2")
    monkeypatch.delenv(integ.SKIP_VERSION_CHECK_ENV, raising=False)
    with pytest.raises(ImportError, match=r"trl 1\.15\.2 .* tested range trl>=1\.16\.0,<1\.17"):
        integ.require("trl")


def test_missing_trl_names_the_extra(monkeypatch):
    def missing(name):
        raise integ.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(integ.importlib.metadata, "version", missing)
    with pytest.raises(ImportError, match=r'pip install torch==2\.13\.0 -e "\.\[trl\]"'):
        integ.require("trl")


def test_trl_trains_the_users_objective(user_module, model_dir, tmp_path):
    model = LlamaForCausalLM.from_pretrained(model_dir)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(ZooGRPOTrainer, model, model_dir, tmp_path, objective="capped_reinforce",
                             max_steps=2, per_device_train_batch_size=4, gradient_accumulation_steps=1)
    assert trainer.zoo_objective.name == "capped_reinforce"
    trainer.train()
    assert trainer.state.global_step == 2
    assert max((a - b).abs().max().item() for a, b in zip(before, trainer.model.parameters())) > 0
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs and all("zoo/clip_ratio" not in h for h in logs)  # the user's loss declares no clip rule
