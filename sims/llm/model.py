"""A small decoder-only transformer (GPT) with a KV cache for batched sampling.

Token and position embeddings, ``n_layer`` pre-LayerNorm blocks (causal
self-attention through :func:`torch.nn.functional.scaled_dot_product_attention`,
then a GELU MLP), a final LayerNorm and an output head tied to the token
embedding. It follows nanoGPT's ``model.py`` and reads the same way.

Padding. Id 0 is padding (:data:`sims.llm.tokenizer.PAD`) and is never attended
to. Rows may be padded on the left (prompts of different lengths, as sampling
produces them) and on the right (after EOS). Positions count real tokens only,
so a row's log-probabilities do not depend on how much padding surrounds it.
When no row has padding before a real token, the plain causal kernel is used.

Shapes: ``B`` rows (in sampling ``N = B * G``: prompt ``b``'s ``g``-th sample is row
``b * G + g``), ``T`` tokens, ``C = n_embd`` channels, ``H`` heads, ``V`` vocabulary.
Log-probabilities are in nats.

The RL step scores sampled completions again under the current weights with
:meth:`GPT.completion_logprobs` and compares them with the behaviour
log-probabilities :attr:`Rollout.logp` recorded while sampling; both are
``(N, Tc)`` with the same mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokenizer import BOS, EOS, PAD

__all__ = [
    "GPTConfig",
    "PRESETS",
    "KVCache",
    "CausalSelfAttention",
    "MLP",
    "Block",
    "Rollout",
    "GPT",
]


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of :class:`GPT`.

    Use :meth:`preset` for the named sizes: ``smoke`` (<= 1M parameters, CI),
    ``default`` (about 3M, the CPU model), ``large`` (about 38M, for a GPU).
    """

    vocab_size: int = 32
    """Number of token ids, specials included (``CharTokenizer.vocab_size``)."""
    block_size: int = 64
    """Longest sequence the model can read: prompt (with BOS) plus completion (with EOS)."""
    n_layer: int = 4
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 256
    """Width of the residual stream (channels C)."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches while training (0 disables it)."""
    bias: bool = True
    """Whether linear layers and LayerNorms carry biases."""

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head: {self.n_head} does not divide n_embd={self.n_embd}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must lie in [0, 1), got {self.dropout!r}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        """The named preset (``smoke``, ``default``, ``large``) with fields overridden."""
        if name not in PRESETS:
            raise ValueError(f"preset: unknown {name!r}; choose from {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"{bad[0]}: not a GPTConfig field")
        return replace(PRESETS[name], **overrides)


PRESETS = {
    "smoke": GPTConfig(n_layer=3, n_head=4, n_embd=128),  # 0.6M parameters
    "default": GPTConfig(n_layer=4, n_head=4, n_embd=256),  # 3.2M parameters
    "large": GPTConfig(n_layer=12, n_head=8, n_embd=512),  # 38M parameters
}


class KVCache:
    """Keys and values of every layer for ``N`` rows and up to ``T_max`` positions.

    ``k[l]`` and ``v[l]`` are ``(N, H, T_max, D)``; columns ``[0, length)`` are filled.
    """

    def __init__(self, config: GPTConfig, N: int, T_max: int, dtype=torch.float32, device=None):
        H, D = config.n_head, config.n_embd // config.n_head
        self.k = [torch.empty(N, H, T_max, D, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.empty(N, H, T_max, D, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        """``x`` (B, T, C); ``attn_mask`` None (causal) or bool (B, 1, T, T0 + T), True = attend."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        if cache is not None:  # append this chunk, attend to everything cached so far
            t0 = cache.length
            cache.k[layer][:, :, t0 : t0 + T] = k
            cache.v[layer][:, :, t0 : t0 + T] = v
            k, v = cache.k[layer][:, :, : t0 + T], cache.v[layer][:, :, : t0 + T]  # (B, H, T0 + T, D)
        p = self.dropout if self.training else 0.0
        if cache is not None and T == 1:  # one new query: plain attention beats the fused kernels here
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))  # (B, H, 1, T0 + 1)
            att = F.softmax(att.masked_fill(~attn_mask, float("-inf")), dim=-1)
            y = att @ v  # (B, H, 1, D)
        elif attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=T > 1)  # (B, H, T, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


@dataclass
class Rollout:
    """Completions sampled from a :class:`GPT`, with what the RL step needs.

    Row ``b * G + g`` is the ``g``-th completion of prompt ``b``; ``N = B * G``.
    """

    prompts: torch.Tensor
    """(N, Tp) long: the prompt ids (BOS first), padded on the left."""
    tokens: torch.Tensor
    """(N, Tc) long: sampled ids; EOS ends a completion, PAD follows it."""
    mask: torch.Tensor
    """(N, Tc) bool: True on sampled tokens, EOS included."""
    logp: torch.Tensor
    """(N, Tc) float: behaviour log-probability of each sampled token under the
    distribution it was drawn from (nats); 0 off the mask."""
    G: int
    """Completions per prompt."""
    dist: torch.Tensor | None = None
    """(N, Tc, V) float, or None: the whole distribution each token was drawn from
    (``sample(..., keep_dist=True)``); zeros off the mask."""

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) long: completion lengths, EOS included."""
        return self.mask.sum(1)

    @property
    def finished(self) -> torch.Tensor:
        """(N,) bool: whether the completion ended with EOS within the token budget."""
        return ((self.tokens == EOS) & self.mask).any(1)

    def sequences(self) -> torch.Tensor:
        """(N, Tp + Tc) long: prompt and completion side by side."""
        return torch.cat([self.prompts, self.tokens], dim=1)


def _pad_aware_layout(idx: torch.Tensor):
    """Positions and attention mask for ids that may carry padding anywhere.

    Returns ``(pos, attn_mask)``: pos (B, T) long counts real tokens before each
    column; attn_mask is None when padding is only trailing (the causal kernel
    then gives the same numbers on every real token), else (B, 1, T, T) bool:
    causal, no padding keys, and every query sees itself (so that rows of pure
    padding stay finite; their outputs are never used).
    """
    B, T = idx.shape
    valid = idx != PAD  # (B, T)
    if bool((valid[:, 1:] <= valid[:, :-1]).all()):  # at most trailing padding
        return torch.arange(T, device=idx.device).expand(B, T), None
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()  # (T, T)
    eye = torch.eye(T, dtype=torch.bool, device=idx.device)  # (T, T)
    mask = (causal & valid[:, None, :]) | eye  # (B, T, T)
    return pos, mask[:, None]  # (B, T), (B, 1, T, T)


class GPT(nn.Module):
    """Decoder-only transformer over character ids; see the module docstring."""

    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None):
        """Build the model and draw its initial weights from ``generator``
        (default ``torch.Generator().manual_seed(0)``); torch's global RNG is left as it was."""
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
            self.drop = nn.Dropout(config.dropout)
            self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
            self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.register_buffer("_never", torch.tensor([PAD, BOS]), persistent=False)
        self.reset_parameters(torch.Generator().manual_seed(0) if generator is None else generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm gains,
        residual projections N(0, 0.02 / sqrt(2 n_layer))."""
        std_proj = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif name.startswith("ln_") or ".ln_" in name:
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, 0.0, std_proj if name.endswith("c_proj.weight") else 0.02, generator=generator)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` leaves out the position embedding
        (the token embedding is the output head too, so it stays in)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self, T: int) -> float:
        """Training FLOPs per token at sequence length T (forward + backward).

        .. math:: 6 N + 12\\, n_\\mathrm{layer}\\, n_\\mathrm{embd}\\, T

        with N = :meth:`num_params` (the PaLM appendix B count nanoGPT uses; the
        attention term counts the full T x T score matrix).
        """
        c = self.config
        return 6.0 * self.num_params() + 12.0 * c.n_layer * c.n_embd * T

    def _run(self, idx, pos, attn_mask=None, cache=None):
        """Logits (B, T, V) of ids ``idx`` (B, T) at positions ``pos`` (B, T)."""
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for layer, block in enumerate(self.h):
            x = block(x, attn_mask, cache, layer)  # (B, T, C)
        if cache is not None:
            cache.length += idx.shape[1]
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return logits.index_fill(-1, self._never, float("-inf"))  # PAD and BOS are never predicted

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits.

        Parameters
        ----------
        idx : (B, T) long
            Token ids; id 0 (PAD) is padding and may sit on either side.

        Returns
        -------
        (B, T, V) float
            ``logits[b, t]`` scores the token after ``idx[b, :t + 1]``.
        """
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"idx: length {T} exceeds block_size={self.config.block_size}")
        pos, attn_mask = _pad_aware_layout(idx)
        return self._run(idx, pos, attn_mask)

    def token_logprobs(
        self, idx: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Log-probability of each target token, teacher-forced.

        .. math:: \\ell_{b,t} = \\log \\mathrm{softmax}(z_{b,t} / \\tau)[y_{b,t}]

        Parameters
        ----------
        idx : (B, T) long
            Inputs.
        targets : (B, T) long
            The token that follows each input (usually ``seq[:, 1:]`` for ``idx = seq[:, :-1]``).
        mask : (B, T) bool, optional
            Where to keep the log-probabilities; zeros elsewhere. Without it, a
            PAD or BOS target scores -inf (the model never predicts either).
        temperature : float
            tau > 0; 1 scores under the model itself.

        Returns
        -------
        (B, T) float
            Log-probabilities in nats, differentiable, zero off ``mask``.
        """
        if targets.shape != idx.shape:
            raise ValueError(f"targets: shape {tuple(targets.shape)} differs from idx {tuple(idx.shape)}")
        if temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        logits = self(idx)  # (B, T, V)
        if temperature != 1.0:
            logits = logits / temperature
        B, T, V = logits.shape
        logp = -F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="none").view(B, T)
        if mask is not None:
            logp = torch.where(mask.bool(), logp, 0.0)
        return logp  # (B, T)

    def completion_logprobs(self, rollout: Rollout, temperature: float = 1.0, chunks: int | None = None,
                            expected: bool = False):
        """(N, Tc) log-probabilities of a rollout's completion tokens under the current
        weights, aligned with ``rollout.logp`` and zero off ``rollout.mask``.

        With ``expected``, also (N, Tc) :math:`\\sum_v d_t(v)\\log\\pi(v\\mid s_t)`, the
        current log-probabilities averaged over the distribution ``rollout.dist``
        the token was drawn from (differentiable, zero off the mask): the pair is returned.

        The rows are packed before the pass: each row's real tokens (prompt without
        its left padding, then the completion up to EOS) move to the left, so only
        trailing padding remains and the plain causal kernel runs with no mask; the
        rows are sorted by length and cut into ``chunks`` groups, each trimmed to its
        longest row. Positions count real tokens, as in :meth:`forward`, so the
        numbers are those of the padded sequences up to floating-point rounding,
        while the work scales with the real tokens, not with ``N * (Tp + Tc)``.

        Parameters
        ----------
        rollout : Rollout
        temperature : float
            tau > 0.
        chunks : int, optional
            Length groups (default: one per 32 rows, at most 8).
        expected : bool
            Also return the expectation over ``rollout.dist`` (which must be kept).
        """
        if expected and rollout.dist is None:
            raise ValueError("expected=True needs the rollout's distributions: sample with keep_dist=True")
        if temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        prompt_len = (rollout.prompts != PAD).sum(1)  # (N,) BOS included
        comp_len = rollout.mask.sum(1)  # (N,)
        total = prompt_len + comp_len  # (N,)
        seq = rollout.sequences()  # (N, Tp + Tc)
        N, Tp, Tc = seq.shape[0], rollout.prompts.shape[1], rollout.tokens.shape[1]
        T = int(total.max())
        cols = torch.arange(T, device=seq.device)  # (T,)
        src = (Tp - prompt_len)[:, None] + cols  # (N, T) column of seq that lands in packed column t
        packed = seq.gather(1, src.clamp(max=Tp + Tc - 1))  # (N, T)
        packed = torch.where(cols < total[:, None], packed, PAD)  # (N, T) real tokens first, then padding
        order = torch.argsort(total, stable=True)  # (N,) shortest rows first
        n_chunks = chunks if chunks is not None else min(8, max(1, N // 32))
        pieces, expect = [], []
        for rows in torch.tensor_split(order, max(1, min(n_chunks, N))):
            if rows.numel() == 0:
                continue
            Tk = int(total[rows].max())
            x = packed[rows, :Tk]  # (n, Tk)
            # completion token j of a row is the target at packed column prompt_len - 1 + j
            at = ((prompt_len[rows] - 1)[:, None] + torch.arange(Tc, device=seq.device)).clamp(max=Tk - 2)  # (n, Tc)
            if not expected:
                logp = self.token_logprobs(x[:, :-1], x[:, 1:], None, temperature)  # (n, Tk - 1)
                pieces.append(logp.gather(1, at))  # (n, Tc)
                continue
            lsm = F.log_softmax(self(x[:, :-1]) / temperature, -1)  # (n, Tk - 1, V)
            lsm = lsm.gather(1, at[..., None].expand(-1, -1, lsm.shape[-1]))  # (n, Tc, V)
            pieces.append(lsm.gather(2, rollout.tokens[rows][..., None].clamp(min=0)).squeeze(2))  # (n, Tc)
            d = rollout.dist[rows]  # (n, Tc, V); where d = 0 (PAD, BOS: log pi = -inf) the term is 0, not NaN
            expect.append((d * lsm.masked_fill(d == 0, 0.0)).sum(-1))  # (n, Tc)
        back = torch.argsort(order)
        logp = torch.where(rollout.mask, torch.cat(pieces)[back], 0.0)  # (N, Tc) in rollout order
        if not expected:
            return logp
        return logp, torch.where(rollout.mask, torch.cat(expect)[back], 0.0)

    @torch.no_grad()
    def sample(
        self,
        prompts: torch.Tensor,
        G: int = 1,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        keep_dist: bool = False,
    ) -> Rollout:
        """Sample ``G`` completions per prompt with a KV cache.

        Parameters
        ----------
        prompts : (B, Tp) long
            Prompt ids, BOS first, padded on the left (``CharTokenizer.encode_prompts``).
        G : int
            Completions per prompt; the batch is ``N = B * G`` rows.
        max_new_tokens : int
            Token budget per completion, EOS included; a completion that hits it
            unfinished is cut there (``Rollout.finished`` is False).
        temperature : float
            tau > 0 samples from softmax(logits / tau) and records log-probabilities
            under that distribution; 0 decodes greedily and records them at tau = 1.
        generator : torch.Generator, optional
            Source of randomness; required unless ``temperature == 0``.
        keep_dist : bool
            Also keep the distribution of every position (``Rollout.dist``), for
            objectives that take an expectation over it (score centering).

        Returns
        -------
        Rollout
            With ``Tc <= max_new_tokens`` columns: sampling stops once every row has ended.
        """
        if G < 1:
            raise ValueError(f"G: must be >= 1, got {G}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature: must be >= 0, got {temperature}")
        if temperature > 0 and generator is None:
            raise ValueError("generator: a torch.Generator is required when temperature > 0")
        B, Tp = prompts.shape
        T_max = Tp + max_new_tokens
        if T_max > self.config.block_size:
            raise ValueError(
                f"max_new_tokens: prompt width {Tp} + {max_new_tokens} exceeds block_size={self.config.block_size}"
            )
        was_training = self.training
        self.eval()
        idx = prompts.repeat_interleave(G, dim=0)  # (N, Tp)
        N, dev = idx.shape[0], idx.device
        cache = KVCache(self.config, N, T_max, dtype=self.wte.weight.dtype, device=dev)

        # prefill: the whole prompt in one pass
        pos, attn_mask = _pad_aware_layout(idx)  # (N, Tp), (N, 1, Tp, Tp) or None
        logits = self._run(idx, pos, attn_mask, cache)[:, -1]  # (N, V)
        key_valid = torch.zeros(N, T_max, dtype=torch.bool, device=dev)  # (N, T_max)
        key_valid[:, :Tp] = idx != PAD
        next_pos = key_valid.sum(1, keepdim=True)  # (N, 1)

        tokens = torch.full((N, max_new_tokens), PAD, dtype=torch.long, device=dev)  # (N, Tc)
        logp = torch.zeros(N, max_new_tokens, device=dev)  # (N, Tc)
        mask = torch.zeros(N, max_new_tokens, dtype=torch.bool, device=dev)  # (N, Tc)
        done = torch.zeros(N, dtype=torch.bool, device=dev)  # (N,)
        dist = torch.zeros(N, max_new_tokens, self.config.vocab_size, device=dev) if keep_dist else None
        for t in range(max_new_tokens):
            logits = logits.float()
            if temperature == 0:
                logp_all = F.log_softmax(logits, dim=-1)  # (N, V)
                tok = logits.argmax(-1)  # (N,)
            else:
                logp_all = F.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)  # (N, V)
                tok = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(1)  # (N,)
            live = ~done  # (N,)
            tok = torch.where(live, tok, PAD)
            tokens[:, t] = tok
            mask[:, t] = live
            logp[:, t] = torch.where(live, logp_all.gather(1, tok[:, None]).squeeze(1), 0.0)
            if dist is not None:
                dist[:, t] = torch.where(live[:, None], logp_all.exp(), 0.0)
            done = done | (tok == EOS)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            # decode: feed the new token, attend to every real token cached so far
            key_valid[:, Tp + t] = live
            attn_mask = key_valid[:, None, None, : Tp + t + 1]  # (N, 1, 1, Tp + t + 1)
            logits = self._run(tok[:, None], next_pos, attn_mask, cache)[:, -1]  # (N, V)
            next_pos = next_pos + 1
        self.train(was_training)
        Tc = t + 1  # columns after the step where every row had finished are dropped
        return Rollout(prompts=idx, tokens=tokens[:, :Tc], mask=mask[:, :Tc], logp=logp[:, :Tc], G=G,
                       dist=None if dist is None else dist[:, :Tc])
