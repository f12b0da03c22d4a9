"""VectorQuantizer: the maths against brute force and hand-computed updates."""

import math

import pytest
import torch

from hf_vae import quantization
from hf_vae.quantization import VectorQuantizer, kmeans, nearest_code, usage_statistics


def _brute_force_nearest(vectors, codebook):
    return ((vectors[:, None, :].double() - codebook[None, :, :].double()) ** 2).sum(-1).argmin(dim=1)


def _set_codebook(quantizer, codes):
    with torch.no_grad():
        quantizer.embedding.copy_(codes)
        if quantizer.use_ema:
            quantizer.cluster_size.fill_(1.0)
            quantizer.embedding_sum.copy_(codes)


def test_nearest_code_matches_brute_force(monkeypatch):
    g = torch.Generator().manual_seed(0)
    vectors, codebook = torch.randn(500, 8, generator=g), torch.randn(64, 8, generator=g)
    expected = _brute_force_nearest(vectors, codebook)
    assert torch.equal(nearest_code(vectors, codebook), expected)
    monkeypatch.setattr(quantization, "_SEARCH_CHUNK", 7)  # the chunked path gives the same ids
    assert torch.equal(nearest_code(vectors, codebook), expected)


def test_forward_returns_nearest_codes_exactly():
    quantizer = VectorQuantizer(16, 4).eval()
    latents = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1)) * 0.1
    out = quantizer(latents)
    flat = latents.movedim(1, -1).reshape(-1, 4)
    expected = _brute_force_nearest(flat, quantizer.embedding.detach()).view(2, 3, 5)
    assert out.indices.shape == (2, 3, 5) and out.indices.dtype == torch.long
    assert torch.equal(out.indices, expected)
    assert torch.equal(quantizer.encode(latents), expected)
    # The forward value is exactly the code (no z + (e - z) rounding), laid out (B, D, *S).
    assert torch.equal(out.quantized, quantizer.embedding.detach()[expected].movedim(-1, 1))
    with pytest.raises(ValueError, match="latents"):
        quantizer(torch.randn(2, 5, 3, 5))


def test_straight_through_gradient_is_identity():
    quantizer = VectorQuantizer(16, 4).train()
    latents = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(2), requires_grad=True)
    weights = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    (quantizer(latents).quantized * weights).sum().backward()
    assert torch.equal(latents.grad, weights)
    # The reconstruction path moves only the encoder; the codebook learns from its own term.
    assert quantizer.embedding.grad is None or not quantizer.embedding.grad.any()


@pytest.mark.parametrize("beta", [0.25, 1.0])
def test_beta_weights_the_commitment_term_only(beta):
    torch.manual_seed(0)
    quantizer = VectorQuantizer(8, 3, commitment_cost=beta).train()
    latents = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(4), requires_grad=True)
    out = quantizer(latents)
    codes = out.quantized.detach()
    squared = (latents.detach() - codes).pow(2).sum(dim=(1, 2)).mean()  # per example, batch mean

    assert out.commitment_loss.item() == pytest.approx(beta * squared.item(), rel=1e-6)
    assert out.codebook_loss.item() == pytest.approx(squared.item(), rel=1e-6)

    # Commitment: gradient only to the encoder output, beta * 2 (z_e - e) / B.
    latent_grad, codebook_grad = torch.autograd.grad(
        out.commitment_loss, [latents, quantizer.embedding], retain_graph=True, allow_unused=True
    )
    torch.testing.assert_close(latent_grad, beta * 2.0 * (latents.detach() - codes) / 2)
    assert codebook_grad is None or not codebook_grad.any()

    # Codebook term: gradient only to the codebook, 2 (e - z_e) / B summed over the assigned vectors, no beta.
    latent_grad, codebook_grad = torch.autograd.grad(
        out.codebook_loss, [latents, quantizer.embedding], allow_unused=True
    )
    assert latent_grad is None or not latent_grad.any()
    flat_z = latents.detach().movedim(1, -1).reshape(-1, 3)
    flat_e = codes.movedim(1, -1).reshape(-1, 3)
    expected = torch.zeros(8, 3).index_add_(0, out.indices.flatten(), 2.0 * (flat_e - flat_z) / 2)
    torch.testing.assert_close(codebook_grad, expected)


def test_ema_update_matches_hand_computed_formula():
    decay, eps = 0.9, 0.1
    quantizer = VectorQuantizer(3, 2, use_ema=True, ema_decay=decay, ema_epsilon=eps).train()
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    _set_codebook(quantizer, codes)
    # Four vectors: three near code 0, one near code 1, none near code 2. Layout (B=1, D=2, S=4).
    vectors = torch.tensor([[0.1, 0.0], [-0.1, 0.2], [0.0, -0.3], [1.2, 0.8]])
    out = quantizer(vectors.t().unsqueeze(0))
    assert out.indices.flatten().tolist() == [0, 0, 0, 1]
    assert torch.equal(out.quantized[0].t(), codes[[0, 0, 0, 1]])  # quantized with the codes before the update
    assert out.codebook_loss.item() == 0.0
    assert "embedding" not in dict(quantizer.named_parameters())

    counts = torch.tensor([3.0, 1.0, 0.0])
    sums = torch.stack([vectors[:3].sum(0), vectors[3], torch.zeros(2)])
    cluster_size = decay * torch.ones(3) + (1 - decay) * counts  # started at pseudo-count 1
    embedding_sum = decay * codes + (1 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + 3 * eps) * total
    torch.testing.assert_close(quantizer.cluster_size, cluster_size)
    torch.testing.assert_close(quantizer.embedding_sum, embedding_sum)
    torch.testing.assert_close(quantizer.embedding, embedding_sum / smoothed[:, None])

    # Eval mode changes nothing.
    state = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.eval()(vectors.t().unsqueeze(0))
    assert all(torch.equal(v, quantizer.state_dict()[k]) for k, v in state.items())


def _clusters(seed=0, per_cluster=20):
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    noise = 0.1 * torch.randn(3, per_cluster, 2, generator=torch.Generator().manual_seed(seed))
    return centres, (centres[:, None, :] + noise).reshape(-1, 2)


def test_kmeans_init_puts_codes_on_the_data():
    centres, data = _clusters()
    quantizer = VectorQuantizer(6, 2, kmeans_init=True).train()
    assert not quantizer.initialized
    quantizer(data.t().unsqueeze(0), generator=torch.Generator().manual_seed(0))
    assert quantizer.initialized
    codes = quantizer.embedding.detach()
    # Every code sits inside a cluster (the random init is ~0, far from all of them) and every cluster has a code.
    to_centre = torch.cdist(codes, centres)
    assert to_centre.min(dim=1).values.max() < 0.5
    assert set(to_centre.argmin(dim=1).tolist()) == {0, 1, 2}
    # Lloyd fixed point: each code used is the mean of the vectors assigned to it.
    assignment = nearest_code(data, codes)
    for k in assignment.unique():
        torch.testing.assert_close(codes[k], data[assignment == k].mean(0))
    # Seeded by the generator; runs once.
    again = VectorQuantizer(6, 2, kmeans_init=True).train()
    again(data.t().unsqueeze(0), generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.embedding, quantizer.embedding)
    quantizer(data.t().unsqueeze(0) + 3.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(quantizer.embedding.detach(), codes)


def test_kmeans_with_ema_sets_consistent_statistics():
    _, data = _clusters()
    centres, counts = kmeans(data, 3, generator=torch.Generator().manual_seed(0))
    assert sorted(counts.tolist()) == [20.0, 20.0, 20.0]
    quantizer = VectorQuantizer(3, 2, use_ema=True, kmeans_init=True, ema_decay=0.5).train()
    quantizer(data.t().unsqueeze(0), generator=torch.Generator().manual_seed(0))
    # The EMA starts from the k-means statistics, so an update on the same data leaves the codes in place.
    ratio = quantizer.embedding_sum / quantizer.cluster_size[:, None]
    torch.testing.assert_close(quantizer.embedding, ratio, atol=1e-3, rtol=0)
    assert sorted(quantizer.cluster_size.tolist()) == pytest.approx([20.0] * 3, rel=1e-5)


def test_dead_code_restart_revives_unused_codes():
    quantizer = VectorQuantizer(8, 2, restart_dead_codes=True, dead_code_window=2, dead_code_threshold=1.0).train()
    codes = torch.cat([torch.zeros(1, 2), torch.full((7, 2), 100.0)])  # only code 0 is near the data
    _set_codebook(quantizer, codes)
    data = 0.1 * torch.randn(1, 2, 30, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        out = quantizer(data, generator=torch.Generator().manual_seed(0))
        assert out.restarted_codes.item() == 0 and out.dead_codes.item() == 7
    assert quantizer.code_usage.tolist() == [60.0] + [0.0] * 7 and quantizer.usage_steps.item() == 2

    # Eval mode never restarts, even with a full window.
    quantizer.eval()(data)
    assert torch.equal(quantizer.embedding.detach(), codes)

    out = quantizer.train()(data, generator=torch.Generator().manual_seed(0))
    assert out.restarted_codes.item() == 7
    revived = quantizer.embedding.detach()[1:]
    vectors = data[0].t()
    assert torch.cdist(revived, vectors).min(dim=1).values.max() == 0  # each revived code is an encoder output
    assert len({tuple(code.tolist()) for code in revived}) == 7  # distinct picks
    assert torch.equal(quantizer.embedding.detach()[0], codes[0])
    assert out.codes_used_fraction.item() > 1 / 8  # the batch already uses revived codes
    assert quantizer.usage_steps.item() == 1  # a new window started


def test_restart_with_ema_resets_statistics_of_revived_codes():
    quantizer = VectorQuantizer(4, 2, use_ema=True, restart_dead_codes=True, dead_code_window=1).train()
    _set_codebook(quantizer, torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
    data = 0.1 * torch.randn(1, 2, 10, generator=torch.Generator().manual_seed(0))
    quantizer(data)
    quantizer(data, generator=torch.Generator().manual_seed(0))
    # The revived codes start a fresh average: pseudo-count one at their new position.
    for k in (1, 2, 3):
        torch.testing.assert_close(quantizer.embedding_sum[k] / quantizer.cluster_size[k], quantizer.embedding[k])
        assert torch.cdist(quantizer.embedding[k : k + 1], data[0].t()).min() < 0.5


def test_quantizer_runs_in_float32_under_bf16_autocast():
    # Codes closer together than bf16 can resolve at this magnitude: a bf16 distance picks wrong codes.
    g = torch.Generator().manual_seed(0)
    codebook = 1.0 + 1e-3 * torch.randn(32, 4, generator=g)
    latents = (1.0 + 1e-3 * torch.randn(2, 4, 6, 6, generator=g)).to(torch.bfloat16)
    quantizer = VectorQuantizer(32, 4).train()
    _set_codebook(quantizer, codebook)
    flat = latents.float().movedim(1, -1).reshape(-1, 4)
    expected = _brute_force_nearest(flat, codebook).view(2, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # Autocast is really on: the same search done naively in it picks other codes.
        assert (flat @ codebook.t()).dtype == torch.bfloat16
        assert not torch.equal(nearest_code(flat, codebook).view(2, 6, 6), expected)
        out = quantizer(latents)
    assert torch.equal(out.indices, expected)
    assert out.quantized.dtype == torch.bfloat16  # back in the caller's dtype
    assert out.commitment_loss.dtype == torch.float32 and out.codebook_loss.dtype == torch.float32
    assert out.perplexity.dtype == torch.float32


def test_perplexity_of_uniform_and_single_code_usage():
    k = 16
    uniform = usage_statistics(torch.full((k,), 5.0))
    assert uniform["perplexity"].item() == pytest.approx(k, rel=1e-5)
    assert uniform["codes_used_fraction"].item() == 1.0 and uniform["dead_codes"].item() == 0
    single = usage_statistics(torch.tensor([7.0] + [0.0] * (k - 1)))
    assert single["perplexity"].item() == pytest.approx(1.0)
    assert single["codes_used_fraction"].item() == pytest.approx(1 / k) and single["dead_codes"].item() == k - 1
    two = usage_statistics(torch.tensor([1.0, 3.0]))
    assert two["perplexity"].item() == pytest.approx(math.exp(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))))

    # Per step: a batch holding every code once has perplexity K.
    quantizer = VectorQuantizer(k, 3).eval()
    codes = quantizer.embedding.detach()
    out = quantizer(codes.t().unsqueeze(0))
    assert out.indices.flatten().tolist() == list(range(k))
    assert out.perplexity.item() == pytest.approx(k, rel=1e-5) and out.dead_codes.item() == 0
    accumulated = torch.bincount(out.indices.flatten(), minlength=k)
    assert quantizer.usage_statistics(accumulated)["perplexity"].item() == pytest.approx(k, rel=1e-5)
    with pytest.raises(ValueError, match="counts"):
        quantizer.usage_statistics(torch.ones(k + 1))


def test_state_lives_in_persistent_buffers():
    quantizer = VectorQuantizer(8, 2, use_ema=True, kmeans_init=True, restart_dead_codes=True)
    keys = set(quantizer.state_dict())
    assert keys == {"embedding", "cluster_size", "embedding_sum", "initialized", "code_usage", "usage_steps"}
    assert not quantizer._non_persistent_buffers_set
    assert list(quantizer.parameters()) == []  # the EMA codebook takes no gradient
    assert list(dict(VectorQuantizer(8, 2).named_parameters())) == ["embedding"]
