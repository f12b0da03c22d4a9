"""Configuration of the VQ-VAE family."""

from __future__ import annotations

from ...configuration_utils import AutoencoderConfig
from ...validation import check_bool, check_float, check_int


class VQVAEConfig(AutoencoderConfig):
    r"""Configuration of a convolutional VQ-VAE (van den Oord et al. 2017).

    The encoder maps an image to a grid of `embedding_dim`-vectors, each replaced by its nearest code in
    a codebook of `codebook_size` vectors; the decoder reconstructs the image from the codes. The code
    grid is `image_size / 2 ** len(hidden_channels)` on a side (28 with two stages: 7 x 7).

    Takes every field of [`AutoencoderConfig`] (`image_size`, `num_channels`, `hidden_channels`,
    `num_res_blocks`, `likelihood`, `likelihood_scale`, `dropout`, `activation`; with a fixed
    `likelihood_scale` sigma the `"gaussian"` likelihood is the paper's MSE up to the factor
    1 / (2 sigma^2) and a constant), plus:

    Args:
        codebook_size (`int`, defaults to 512): number of codes K (the vocabulary of a prior over the codes).
        embedding_dim (`int`, defaults to 64): size D of each code and of the encoder output vectors.
        commitment_cost (`float`, defaults to 0.25): beta, the weight of the commitment term
            ||z_e - sg[e]||^2 (the codebook term has weight 1).
        use_ema (`bool`, defaults to `True`): learn the codebook by exponential moving averages of the
            assigned encoder outputs (no codebook loss, no codebook gradient) instead of by gradient.
        ema_decay (`float`, defaults to 0.99): decay of those moving averages.
        ema_epsilon (`float`, defaults to 1e-5): Laplace smoothing of the EMA cluster sizes.
        kmeans_init (`bool`, defaults to `True`): initialise the codebook by k-means on the encoder
            outputs of the first training batch.
        restart_dead_codes (`bool`, defaults to `True`): move codes assigned fewer than
            `dead_code_threshold` vectors during `dead_code_window` training steps onto random encoder
            outputs of the current batch.
        dead_code_threshold (`float`, defaults to 1.0): assignments per window below which a code is dead
            (1.0: unused for the whole window). Also the threshold of the `dead_codes` statistic.
        dead_code_window (`int`, defaults to 100): training steps per usage window.
    """

    model_type = "vqvae"

    codebook_size: int = 512
    embedding_dim: int = 64
    commitment_cost: float = 0.25
    use_ema: bool = True
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5
    kmeans_init: bool = True
    restart_dead_codes: bool = True
    dead_code_threshold: float = 1.0
    dead_code_window: int = 100

    @property
    def code_grid_size(self) -> int:
        """Side of the square grid of codes: image_size / 2 ** len(hidden_channels)."""
        return self.latent_grid_size

    def _check_fields(self) -> None:
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_int("embedding_dim", self.embedding_dim, minimum=1)
        check_float("commitment_cost", self.commitment_cost, minimum=0.0)
        check_bool("use_ema", self.use_ema)
        check_float("ema_decay", self.ema_decay, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_float("ema_epsilon", self.ema_epsilon, minimum=0.0, exclusive_minimum=True)
        check_bool("kmeans_init", self.kmeans_init)
        check_bool("restart_dead_codes", self.restart_dead_codes)
        check_float("dead_code_threshold", self.dead_code_threshold, minimum=0.0)
        check_int("dead_code_window", self.dead_code_window, minimum=1)
        super()._check_fields()  # the shared autoencoder fields
