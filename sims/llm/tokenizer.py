"""Character-level tokenizer with a fixed alphabet and three special tokens.

Ids are fixed by convention: ``PAD = 0``, ``BOS = 1``, ``EOS = 2``; the alphabet's
characters follow in the order given. The model treats id 0 as padding (it is
never attended to), so every tokenizer in this package keeps ``PAD = 0``.

A prompt is encoded as ``BOS + chars``; a completion as ``chars + EOS``. Batches
of prompts are padded on the left (so that generation continues from the same
column for every row), batches of training sequences on the right.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "SPECIALS",
    "CharTokenizer",
    "pad_left",
    "pad_right",
]

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")


class CharTokenizer:
    """Maps characters of a fixed alphabet to ids ``3 .. 3 + len(alphabet) - 1``.

    Parameters
    ----------
    alphabet : str
        The characters the tokenizer knows, each once. Order fixes the ids.

    Raises
    ------
    ValueError
        If ``alphabet`` is empty or repeats a character.
    """

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, alphabet: str):
        if not alphabet:
            raise ValueError("alphabet: must contain at least one character")
        if len(set(alphabet)) != len(alphabet):
            dup = sorted({c for c in alphabet if alphabet.count(c) > 1})
            raise ValueError(f"alphabet: repeated characters {dup!r}")
        self.alphabet = alphabet
        self.stoi = {c: i + len(SPECIALS) for i, c in enumerate(alphabet)}
        self.itos = {i: c for c, i in self.stoi.items()}

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(SPECIALS) + len(self.alphabet)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``text``, optionally framed by BOS / EOS.

        Raises
        ------
        ValueError
            If ``text`` contains a character outside the alphabet.
        """
        try:
            ids = [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"text: character {e.args[0]!r} is not in the alphabet") from None
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int] | torch.Tensor, *, stop_at_eos: bool = True) -> str:
        """Text of ``ids``; special tokens are dropped, decoding stops at the first EOS."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == EOS and stop_at_eos:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        """Decode each row of a ``(N, T)`` id tensor."""
        return [self.decode(row) for row in ids.tolist()]

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Left-padded ``(B, Tp)`` ids of ``BOS + prompt`` for each prompt."""
        return pad_left([self.encode(p, bos=True) for p in prompts])

    def __repr__(self) -> str:
        return f"CharTokenizer(alphabet={self.alphabet!r})"


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int = PAD) -> torch.Tensor:
    """Stack id lists into a ``(N, max_len)`` long tensor, padded on the left."""
    if len(seqs) == 0:
        raise ValueError("seqs: need at least one sequence")
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, n - len(s) :] = torch.as_tensor(s, dtype=torch.long)
    return out


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int = PAD, length: int | None = None) -> torch.Tensor:
    """Stack id lists into a ``(N, length)`` long tensor, padded on the right.

    ``length`` defaults to the longest sequence; a shorter one raises ValueError.
    """
    if len(seqs) == 0:
        raise ValueError("seqs: need at least one sequence")
    n = max(len(s) for s in seqs)
    if length is None:
        length = n
    elif length < n:
        raise ValueError(f"length: {length} is shorter than the longest sequence ({n})")
    out = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out
