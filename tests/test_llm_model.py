"""GPT: shapes, presets, causal masking, padding invariance, KV-cache sampling against teacher forcing."""

import pytest
import torch

from sims.llm.model import GPT, GPTConfig
from sims.llm.tokenizer import BOS, EOS, PAD, CharTokenizer

TOK = CharTokenizer("0123456789+-=#")


@pytest.fixture(scope="module")
def model():
    m = GPT(
        GPTConfig.preset("smoke", vocab_size=TOK.vocab_size, block_size=48), generator=torch.Generator().manual_seed(3)
    )
    return m.eval()


def test_presets_sizes():
    sizes = {name: GPT(GPTConfig.preset(name, vocab_size=32)).num_params() for name in ("smoke", "default")}
    assert sizes["smoke"] <= 1_000_000
    assert 2_500_000 <= sizes["default"] <= 3_500_000


def test_forward_and_logprob_shapes(model):
    idx = torch.randint(3, TOK.vocab_size, (5, 11), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    assert logits.shape == (5, 11, TOK.vocab_size)
    lp = model.token_logprobs(idx[:, :-1], idx[:, 1:], torch.ones(5, 10, dtype=torch.bool))
    assert lp.shape == (5, 10) and (lp <= 0).all()
    # PAD and BOS are never predicted
    assert torch.isneginf(logits[..., PAD]).all() and torch.isneginf(logits[..., BOS]).all()


def test_changing_a_future_token_leaves_past_logits_unchanged(model):
    idx = torch.randint(3, TOK.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    other = idx.clone()
    other[:, 7] = (other[:, 7] - 3 + 1) % (TOK.vocab_size - 3) + 3
    a, b = model(idx), model(other)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_padding_does_not_change_real_tokens(model):
    ids = TOK.encode("12+7-3=16", bos=True)
    plain = model(torch.tensor([ids]))[0]
    left = model(torch.tensor([[PAD] * 4 + ids]))[0, 4:]
    right = model(torch.tensor([ids + [PAD] * 3]))[0, : len(ids)]
    torch.testing.assert_close(left, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(right, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kv_cache_logprobs_equal_teacher_forcing(model, temperature):
    prompts = TOK.encode_prompts(["1+2=", "13-4=", "9=", "77+77-1="])
    roll = model.sample(
        prompts, G=3, max_new_tokens=16, temperature=temperature, generator=torch.Generator().manual_seed(0)
    )
    N = 4 * 3
    Tc = roll.tokens.shape[1]
    assert roll.tokens.shape == roll.mask.shape == roll.logp.shape == (N, Tc) and Tc <= 16
    assert Tc == 16 or roll.finished.all()
    assert roll.prompts.shape[0] == N and torch.equal(roll.prompts[3], roll.prompts[5])
    assert (roll.tokens[~roll.mask] == PAD).all() and (roll.logp[~roll.mask] == 0).all()
    assert not ((roll.tokens == PAD) | (roll.tokens == BOS))[roll.mask].any()
    # after an EOS nothing more is sampled
    for row, m in zip(roll.tokens, roll.mask):
        eos = (row == EOS).nonzero()
        if len(eos):
            assert m[: eos[0, 0] + 1].all() and not m[eos[0, 0] + 1 :].any()
    lp = model.completion_logprobs(roll, temperature=temperature)
    torch.testing.assert_close(lp, roll.logp, atol=1e-5, rtol=0)


def test_sampling_is_a_function_of_the_generator(model):
    prompts = TOK.encode_prompts(["1+2=", "5-5="])
    a = model.sample(prompts, 4, 10, 1.0, torch.Generator().manual_seed(7))
    b = model.sample(prompts, 4, 10, 1.0, torch.Generator().manual_seed(7))
    c = model.sample(prompts, 4, 10, 1.0, torch.Generator().manual_seed(8))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logp, b.logp)
    assert not torch.equal(a.tokens, c.tokens)
    g1, g2 = model.sample(prompts, 2, 10, 0.0), model.sample(prompts, 2, 10, 0.0)
    assert torch.equal(g1.tokens, g2.tokens) and torch.equal(g1.tokens[0], g1.tokens[1])


def test_construction_and_sampling_leave_global_rng_alone(model):
    state = torch.random.get_rng_state()
    GPT(GPTConfig.preset("smoke", vocab_size=20))
    model.sample(TOK.encode_prompts(["1="]), 2, 5, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_configs_name_the_field(model):
    with pytest.raises(ValueError, match="n_head"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="preset"):
        GPTConfig.preset("huge")
    with pytest.raises(ValueError, match="n_lyr"):
        GPTConfig.preset("smoke", n_lyr=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.sample(TOK.encode_prompts(["1="]), 1, 100, 1.0, torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        model.sample(TOK.encode_prompts(["1="]), 1, 5, 1.0)
