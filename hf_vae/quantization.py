"""Vector quantization, written once: the bottleneck of the VQ-VAE (van den Oord et al. 2017).

`VectorQuantizer` maps each encoder output vector z_e to its nearest code e_k (squared L2) and returns

- `quantized`: e_k in the forward pass, with the straight-through gradient d quantized / d z_e = I (§3.2);
- `codebook_loss` ||sg[z_e] - e||^2, which moves the codes (0 when the codebook is learned by EMA);
- `commitment_loss` beta * ||z_e - sg[e]||^2, which keeps the encoder close to its codes; beta =
  `commitment_cost` weights this term only, so `reconstruction + codebook_loss + commitment_loss` is the
  paper's objective (eq. 3);
- codebook health: perplexity exp(H(code usage)), fraction of codes used, dead codes.

Training-time codebook maintenance, each optional and switched off in eval mode:

- EMA codebook (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019): cluster sizes N and
  embedding sums m are exponential moving averages of the batch assignments, the cluster sizes are
  Laplace-smoothed, and e = m / N. It replaces the codebook loss.
- k-means initialisation from the first training batch (k-means++ seeding then Lloyd iterations).
- restart of dead codes: a code assigned fewer than `dead_code_threshold` vectors during a window of
  `dead_code_window` training steps is moved onto a random encoder output of the current batch.

All of that state lives in persistent buffers, so `save_pretrained` / `from_pretrained` restore it.
The maths runs in float32 even under bf16/fp16 autocast: nearest-code search and EMA statistics are
not safe in half precision. Losses are sums over the channels and positions of each example averaged
over the batch, the scale of log p(x|z) in nats per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

# Rows of encoder outputs per distance matrix: bounds memory at (rows x codebook_size) floats.
_SEARCH_CHUNK = 16384


@dataclass
class QuantizerOutput:
    """What `VectorQuantizer.forward` returns.

    Args:
        quantized: (B, D, *S) the nearest codes, in the dtype of the input; gradients pass straight
            through to the input.
        indices: (B, *S) long, the code ids.
        codebook_loss: scalar, ||sg[z_e] - e||^2 per example averaged over the batch (0 with EMA).
        commitment_loss: scalar, commitment_cost * ||z_e - sg[e]||^2 per example averaged over the batch.
        perplexity: scalar, exp of the entropy of this batch's code usage (1 = one code, K = uniform).
        codes_used_fraction: scalar, fraction of the codebook this batch used.
        dead_codes: scalar long, codes assigned fewer than `dead_code_threshold` vectors in this batch.
        restarted_codes: scalar long, codes restarted by this (training) step.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor
    codes_used_fraction: torch.Tensor
    dead_codes: torch.Tensor
    restarted_codes: torch.Tensor


# ---------------------------------------------------------------------------------------------
# The maths as functions (tested against brute force)
# ---------------------------------------------------------------------------------------------


def nearest_code(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of `codebook` (K, D) for each row of `vectors` (N, D), by squared L2.

    ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2, in chunks of rows; ties go to the lowest index.
    """
    codebook_sq = codebook.pow(2).sum(dim=1)
    out = []
    for chunk in vectors.split(_SEARCH_CHUNK):
        distances = chunk.pow(2).sum(dim=1, keepdim=True) - 2.0 * chunk @ codebook.t() + codebook_sq
        out.append(distances.argmin(dim=1))
    return torch.cat(out) if out else vectors.new_zeros(0, dtype=torch.long)


def usage_statistics(counts: torch.Tensor, dead_code_threshold: float = 1.0) -> dict[str, torch.Tensor]:
    """Codebook health from assignment counts (K,) (one batch, or accumulated over a dataset).

    Returns `perplexity` exp(H(p)) with p = counts / sum(counts) (K for uniform usage, 1 for a single
    code), `codes_used_fraction` (codes with count > 0, over K) and `dead_codes` (codes with count
    below `dead_code_threshold`).
    """
    counts = counts.detach().float()
    probs = counts / counts.sum().clamp(min=1e-12)
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    return {
        "perplexity": torch.exp(entropy),
        "codes_used_fraction": (counts > 0).float().mean(),
        "dead_codes": (counts < dead_code_threshold).sum(),
    }


def _random_rows(num_rows: int, num_picks: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """`num_picks` distinct row ids in [0, num_rows) (with replacement when there are too few rows)."""
    gen_device = generator.device if generator is not None else device
    if num_picks <= num_rows:
        picks = torch.randperm(num_rows, generator=generator, device=gen_device)[:num_picks]
    else:
        picks = torch.randint(0, num_rows, (num_picks,), generator=generator, device=gen_device)
    return picks.to(device)


def kmeans(
    vectors: torch.Tensor, num_clusters: int, num_iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) then `num_iters` Lloyd iterations on (N, D) vectors.

    Returns the centres (num_clusters, D) and their cluster sizes (num_clusters,). A cluster that
    empties keeps its previous centre. With fewer distinct vectors than clusters, centres repeat.
    """
    n = vectors.shape[0]
    gen_device = generator.device if generator is not None else vectors.device
    first = torch.randint(0, n, (1,), generator=generator, device=gen_device).to(vectors.device)
    centres = [vectors[first[0]]]
    closest_sq = (vectors - centres[0]).pow(2).sum(dim=1)
    for _ in range(1, num_clusters):
        # D^2 sampling: the next centre is a vector drawn with probability proportional to its
        # squared distance to the nearest centre so far (uniform when every vector is already a centre).
        weights = closest_sq if closest_sq.sum() > 0 else torch.ones_like(closest_sq)
        pick = torch.multinomial(weights.to(gen_device), 1, generator=generator).to(vectors.device)
        centres.append(vectors[pick[0]])
        closest_sq = torch.minimum(closest_sq, (vectors - centres[-1]).pow(2).sum(dim=1))
    centres = torch.stack(centres)
    for _ in range(num_iters):
        assignment = nearest_code(vectors, centres)
        counts = torch.bincount(assignment, minlength=num_clusters).to(vectors.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assignment, vectors)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    counts = torch.bincount(nearest_code(vectors, centres), minlength=num_clusters).to(vectors.dtype)
    return centres, counts


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization of (B, D, *S) encoder outputs onto a codebook of K vectors of size D.

    Args:
        codebook_size: K, the number of codes.
        embedding_dim: D, the size of each code (the channels of the encoder output).
        commitment_cost: beta, the weight of the commitment term ||z_e - sg[e]||^2.
        use_ema: learn the codebook by exponential moving averages instead of the codebook loss; the
            codebook is then a buffer (no gradient, not in `parameters()`).
        ema_decay: decay of the moving averages.
        ema_epsilon: Laplace smoothing of the cluster sizes (keeps e = m / N finite for unused codes).
        kmeans_init: set the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        restart_dead_codes: move codes used fewer than `dead_code_threshold` times over a window of
            `dead_code_window` training steps onto random encoder outputs of the current batch.
        dead_code_threshold: minimum assignments per window for a code to count as alive; also the
            threshold of the `dead_codes` statistic.
        dead_code_window: training steps per usage window.

    Buffers (persistent): `cluster_size`, `embedding_sum` (EMA), `initialized` (k-means),
    `code_usage`, `usage_steps` (restarts). Distributed training: the EMA statistics and usage counts
    are summed over processes and k-means/restarts are broadcast from rank 0, so every rank keeps the
    same codebook.
    """

    def __init__(
        self,
        codebook_size: int,
        embedding_dim: int,
        commitment_cost: float = 0.25,
        use_ema: bool = False,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        restart_dead_codes: bool = False,
        dead_code_threshold: float = 1.0,
        dead_code_window: int = 100,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.use_ema = use_ema
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.restart_dead_codes = restart_dead_codes
        self.dead_code_threshold = dead_code_threshold
        self.dead_code_window = dead_code_window

        codebook = torch.empty(codebook_size, embedding_dim)
        if use_ema:
            self.register_buffer("embedding", codebook)
            self.register_buffer("cluster_size", torch.empty(codebook_size))
            self.register_buffer("embedding_sum", torch.empty(codebook_size, embedding_dim))
        else:
            self.embedding = nn.Parameter(codebook)
        if kmeans_init:
            self.register_buffer("initialized", torch.empty((), dtype=torch.bool))
        if restart_dead_codes:
            self.register_buffer("code_usage", torch.empty(codebook_size))
            self.register_buffer("usage_steps", torch.empty((), dtype=torch.long))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # transformers' guarded init functions: a no-op on tensors `from_pretrained` has already loaded.
        init.uniform_(self.embedding, -1.0 / self.codebook_size, 1.0 / self.codebook_size)
        if self.use_ema:
            # A pseudo-count of one at the initial codes, so m / N starts at the codebook.
            init.ones_(self.cluster_size)
            init.copy_(self.embedding_sum, self.embedding)
        if self.kmeans_init:
            init.zeros_(self.initialized)
        if self.restart_dead_codes:
            init.zeros_(self.code_usage)
            init.zeros_(self.usage_steps)

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, embedding_dim={self.embedding_dim}, "
                f"commitment_cost={self.commitment_cost}, use_ema={self.use_ema}")

    # -- lookups (pure: no state changes) ---------------------------------------------------------

    def _flatten(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, D, *S) -> (B * prod(S), D) float32."""
        if latents.ndim < 2 or latents.shape[1] != self.embedding_dim:
            raise ValueError(
                f"`latents` must have shape (batch, {self.embedding_dim}, ...), got {tuple(latents.shape)}"
            )
        return latents.float().movedim(1, -1).reshape(-1, self.embedding_dim)

    @torch.no_grad()
    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """Code ids (B, *S) of the nearest codes to encoder outputs (B, D, *S)."""
        with torch.autocast(device_type=latents.device.type, enabled=False):
            flat = self._flatten(latents)
            indices = nearest_code(flat, self.embedding.float())
        return indices.view(latents.shape[0], *latents.shape[2:])

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (B, D, *S) float32, contiguous, for code ids (B, *S)."""
        codes = F.embedding(indices.long(), self.embedding.float())  # (B, *S, D)
        return codes.movedim(-1, 1).contiguous()

    # -- forward ------------------------------------------------------------------------------------

    def forward(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantize encoder outputs (B, D, *S); in training mode also update the codebook state.

        `generator` drives the random picks of k-means and of dead-code restarts.
        """
        with torch.autocast(device_type=latents.device.type, enabled=False):
            z = latents.float()
            flat = self._flatten(latents)
            restarted = torch.zeros((), dtype=torch.long, device=latents.device)
            if self.training:
                # Codebook changes happen before the lookup, so no tensor saved for backward is modified.
                if self.kmeans_init and not bool(self.initialized):
                    self._kmeans_initialize(flat.detach(), generator)
                if self.restart_dead_codes and int(self.usage_steps) >= self.dead_code_window:
                    restarted = self._restart_dead_codes(flat.detach(), generator)

            indices = nearest_code(flat.detach(), self.embedding.detach().float())
            grid_indices = indices.view(latents.shape[0], *latents.shape[2:])
            codes = self.embed(grid_indices)  # (B, D, *S); carries the codebook gradient
            batch = latents.shape[0]
            commitment = (z - codes.detach()).pow(2).reshape(batch, -1).sum(dim=1).mean()
            if self.use_ema:
                codebook_loss = torch.zeros((), device=latents.device)
            else:
                codebook_loss = (z.detach() - codes).pow(2).reshape(batch, -1).sum(dim=1).mean()
            # Straight-through: the value is exactly the code (z - sg[z] is exactly 0), the gradient
            # w.r.t. z is the identity, and no gradient reaches the codebook through this path.
            quantized = codes.detach() + (z - z.detach())

            counts = torch.bincount(indices, minlength=self.codebook_size).float()
            stats = usage_statistics(counts, self.dead_code_threshold)
            if self.training:
                self._update_state(flat.detach(), indices, counts)

        return QuantizerOutput(
            quantized=quantized.to(latents.dtype),
            indices=grid_indices,
            codebook_loss=codebook_loss,
            commitment_loss=self.commitment_cost * commitment,
            perplexity=stats["perplexity"],
            codes_used_fraction=stats["codes_used_fraction"],
            dead_codes=stats["dead_codes"],
            restarted_codes=restarted,
        )

    # -- codebook health ------------------------------------------------------------------------------

    def usage_statistics(self, counts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`usage_statistics` of `counts` (K,) accumulated by the caller, e.g. `torch.bincount(indices.flatten(),
        minlength=K)` summed over a dataset; `None` uses the current restart window's counts."""
        if counts is None:
            if not self.restart_dead_codes:
                raise ValueError("`counts` must be given when restart_dead_codes=False (no usage is tracked), got None")
            counts = self.code_usage
        if not isinstance(counts, torch.Tensor) or tuple(counts.shape) != (self.codebook_size,):
            got = tuple(counts.shape) if isinstance(counts, torch.Tensor) else type(counts).__name__
            raise ValueError(f"`counts` must be a tensor of shape ({self.codebook_size},), got {got}")
        return usage_statistics(counts, self.dead_code_threshold)

    # -- training-time state --------------------------------------------------------------------------

    @torch.no_grad()
    def _set_codes(self, which: torch.Tensor | slice, codes: torch.Tensor, counts: torch.Tensor) -> None:
        """Put `codes` at rows `which`; with EMA, restart their statistics at `counts` pseudo-counts there."""
        self.embedding[which] = codes.to(self.embedding.dtype)
        if self.use_ema:
            self.cluster_size[which] = counts.to(self.cluster_size.dtype)
            self.embedding_sum[which] = (codes * counts[:, None]).to(self.embedding_sum.dtype)

    @torch.no_grad()
    def _kmeans_initialize(self, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        centres, counts = kmeans(flat, self.codebook_size, self.kmeans_iters, generator)
        if _distributed():
            dist.broadcast(centres, src=0)
            dist.broadcast(counts, src=0)
        # Empty clusters count one, so EMA does not pull their codes to the origin at the next step.
        self._set_codes(slice(None), centres, counts.clamp(min=1.0))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        dead = torch.nonzero(self.code_usage < self.dead_code_threshold).flatten()
        if dead.numel() > 0:
            new_codes = flat[_random_rows(flat.shape[0], dead.numel(), generator, flat.device)]
            if _distributed():
                dist.broadcast(new_codes, src=0)
            self._set_codes(dead, new_codes, torch.ones(dead.numel(), device=flat.device))
        self.code_usage.zero_()
        self.usage_steps.zero_()
        return torch.tensor(dead.numel(), device=flat.device)

    @torch.no_grad()
    def _update_state(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        if not (self.use_ema or self.restart_dead_codes):
            return
        if self.use_ema:
            sums = torch.zeros(self.codebook_size, self.embedding_dim, device=flat.device).index_add_(0, indices, flat)
        if _distributed():
            counts = counts.clone()
            dist.all_reduce(counts)
            if self.use_ema:
                dist.all_reduce(sums)
        if self.use_ema:
            # N <- decay N + (1 - decay) n ;  m <- decay m + (1 - decay) sum of assigned z_e ;
            # Laplace smoothing N_i <- (N_i + eps) / (sum N + K eps) * sum N ;  e_i <- m_i / N_i.
            decay = self.ema_decay
            cluster_size = self.cluster_size.float() * decay + counts * (1.0 - decay)
            embedding_sum = self.embedding_sum.float() * decay + sums * (1.0 - decay)
            total = cluster_size.sum()
            smoothed = (cluster_size + self.ema_epsilon) / (total + self.codebook_size * self.ema_epsilon) * total
            self.cluster_size.copy_(cluster_size)
            self.embedding_sum.copy_(embedding_sum)
            self.embedding.copy_(embedding_sum / smoothed[:, None])
        if self.restart_dead_codes:
            self.code_usage.add_(counts.to(self.code_usage.dtype))
            self.usage_steps.add_(1)


__all__ = ["QuantizerOutput", "VectorQuantizer", "kmeans", "nearest_code", "usage_statistics"]
