"""The shared autoregressive sampling loop: filters against hand examples, guidance, state, validation."""

import math

import pytest
import torch

from hf_vae.sampling import sample_from_logits, sample_tokens, top_k_filter, top_p_filter

INF = float("inf")


def test_top_k_filter_hand_examples():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, -1.0, 4.0, 2.0]])
    expected = torch.tensor([[-INF, 3.0, 2.0, -INF], [-INF, -INF, 4.0, 2.0]])
    assert torch.equal(top_k_filter(logits, 2), expected)
    assert torch.equal(top_k_filter(logits, 4), logits)
    assert torch.equal(top_k_filter(logits, 10), logits)  # k larger than the vocabulary keeps everything
    # Ties with the k-th largest are kept.
    assert torch.equal(top_k_filter(torch.tensor([[1.0, 1.0, 0.0]]), 1), torch.tensor([[1.0, 1.0, -INF]]))


def test_top_p_filter_hand_examples():
    # Probabilities 0.2, 0.5, 0.3 (deliberately not sorted).
    logits = torch.tensor([[0.2, 0.5, 0.3]]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False]  # the top token alone already holds >= 0.4
    assert kept(0.5) == [False, True, False]
    assert kept(0.6) == [False, True, True]  # 0.5 < 0.6 -> add the 0.3 token
    assert kept(0.9) == [True, True, True]
    assert kept(1.0) == [True, True, True]
    assert kept(1e-6) == [False, True, False]  # the most likely token is always kept
    # Kept logits are unchanged; each row is filtered on its own.
    rows = torch.tensor([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]]).log()
    filtered = top_p_filter(rows, 0.6)
    assert torch.equal(filtered[0, 1:], rows[0, 1:]) and filtered[0, 0] == -INF
    assert filtered[1].isfinite().tolist() == [True, False, False]


def test_sample_from_logits_matches_the_softmax():
    logits = torch.tensor([0.0, 1.0, -1.0, 0.5]).repeat(40_000, 1)
    draws = sample_from_logits(logits, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(frequencies, logits[0].softmax(0), atol=0.01, rtol=0)
    # Temperature 0.5 squares the odds; top-k 2 keeps tokens 1 and 3 only.
    draws = sample_from_logits(logits, temperature=0.5, top_k=2, generator=torch.Generator().manual_seed(1))
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    p1 = 1 / (1 + math.exp(-1.0))  # softmax of (2, 1) over tokens 1 and 3
    torch.testing.assert_close(frequencies, torch.tensor([0.0, p1, 0.0, 1 - p1]), atol=0.01, rtol=0)
    # A token of zero probability is never drawn.
    masked = torch.tensor([-INF, 0.0, -INF, 0.0]).repeat(10_000, 1)
    assert set(sample_from_logits(masked).tolist()) == {1, 3}


def _markov_logits_fn(vocab_size=4):
    """x_0 = 2, then x_p = x_{p-1} + 1 mod V, almost surely; counts its calls in the state."""

    def logits_fn(tokens, position, state):
        previous = tokens[:, position - 1] if position > 0 else torch.full((tokens.shape[0],), 1)
        logits = torch.full((tokens.shape[0], vocab_size), -30.0)
        logits[torch.arange(tokens.shape[0]), (previous + 1) % vocab_size] = 30.0
        return logits, (state or 0) + 1

    return logits_fn


def test_sample_tokens_feeds_back_its_draws_and_carries_state():
    calls = []

    def logits_fn(tokens, position, state):
        assert torch.all(tokens[:, position:] == 0), "future positions must be blank"
        calls.append(state)
        return _markov_logits_fn()(tokens, position, state)

    tokens = sample_tokens(logits_fn, 3, 6, generator=torch.Generator().manual_seed(0), progress=False)
    assert tokens.shape == (3, 6) and tokens.dtype == torch.long
    assert tokens.tolist() == [[2, 3, 0, 1, 2, 3]] * 3
    assert calls == [None, 1, 2, 3, 4, 5]


def test_sample_tokens_is_reproducible_with_a_generator():
    def logits_fn(tokens, position, state):
        return torch.zeros(tokens.shape[0], 7), state

    a = sample_tokens(logits_fn, 4, 10, generator=torch.Generator().manual_seed(0), progress=False)
    b = sample_tokens(logits_fn, 4, 10, generator=torch.Generator().manual_seed(0), progress=False)
    c = sample_tokens(logits_fn, 4, 10, generator=torch.Generator().manual_seed(1), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_classifier_free_guidance_combines_cond_and_uncond_rows():
    n = 20_000
    cond, uncond = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])

    def logits_fn(tokens, position, state):
        assert tokens.shape[0] == 2 * n  # conditional rows, then the same rows unconditionally
        assert torch.equal(tokens[:n], tokens[n:])
        return torch.cat([cond.repeat(n, 1), uncond.repeat(n, 1)]), state

    for scale in (0.0, 1.5, 3.0):
        draws = sample_tokens(logits_fn, n, 2, guidance_scale=scale, generator=torch.Generator().manual_seed(0), progress=False)
        # uncond + s * (cond - uncond) = (s, 0): p(token 0) = sigmoid(s).
        frequency = (draws == 0).float().mean().item()
        assert frequency == pytest.approx(1 / (1 + math.exp(-scale)), abs=0.01)


def test_guidance_scale_one_is_plain_conditional_sampling():
    def logits_fn(tokens, position, state):
        assert tokens.shape[0] == 3  # no doubling
        return torch.zeros(3, 5), state

    sample_tokens(logits_fn, 3, 2, guidance_scale=1.0, progress=False)


def test_progress_bar_can_be_disabled(capsys):
    sample_tokens(_markov_logits_fn(), 1, 20, progress=True)
    assert "sampling tokens" in capsys.readouterr().err
    sample_tokens(_markov_logits_fn(), 1, 20, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_positions": 0}, "num_positions"),
        ({"generator": 1234}, "generator"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    arguments = {"num_samples": 2, "num_positions": 3, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        sample_tokens(_markov_logits_fn(), **arguments)


def test_bad_logits_shape_raises():
    with pytest.raises(ValueError, match="logits_fn"):
        sample_tokens(lambda tokens, position, state: (torch.zeros(5), state), 2, 3, progress=False)
