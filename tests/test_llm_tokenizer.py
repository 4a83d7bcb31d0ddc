"""Character tokenizer: round trips, special ids, padding helpers, errors."""

import pytest
import torch

from sims.llm.tokenizer import BOS, EOS, PAD, CharTokenizer, pad_left, pad_right


def test_round_trip_and_special_ids():
    tok = CharTokenizer("0123456789+-=#")
    text = "12+7-3=16#16"
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == BOS and ids[-1] == EOS and min(ids[1:-1]) >= 3
    assert tok.decode(ids) == text
    assert (PAD, BOS, EOS) == (0, 1, 2) and tok.vocab_size == 3 + 14


def test_decode_stops_at_eos_and_drops_specials():
    tok = CharTokenizer("ab")
    ids = [BOS, 3, 4, EOS, 3, PAD]
    assert tok.decode(ids) == "ab"
    assert tok.decode(ids, stop_at_eos=False) == "aba"
    assert tok.decode_batch(torch.tensor([ids, [4, EOS, 0, 0, 0, 0]])) == ["ab", "b"]


def test_unknown_character_and_bad_alphabet_raise():
    tok = CharTokenizer("ab")
    with pytest.raises(ValueError, match="'c'"):
        tok.encode("abc")
    with pytest.raises(ValueError, match="alphabet"):
        CharTokenizer("aa")
    with pytest.raises(ValueError, match="alphabet"):
        CharTokenizer("")


def test_padding_helpers():
    left = pad_left([[1, 5], [1, 5, 6, 7], [1]])
    assert left.tolist() == [[0, 0, 1, 5], [1, 5, 6, 7], [0, 0, 0, 1]]
    right = pad_right([[1, 5], [1, 5, 6]], length=4)
    assert right.tolist() == [[1, 5, 0, 0], [1, 5, 6, 0]]
    with pytest.raises(ValueError, match="length"):
        pad_right([[1, 2, 3]], length=2)
    tok = CharTokenizer("xy")
    assert tok.encode_prompts(["x", "yxy"]).tolist() == [[0, 0, 1, 3], [1, 4, 3, 4]]
