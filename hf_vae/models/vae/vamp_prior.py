"""The VampPrior's learned pseudo-inputs (Tomczak & Welling 2018), for `VAEModel` with `prior: "vamp"`.

The prior is the mixture of the model's own posteriors at K learned images u_k:

    p(z) = (1/K) sum_k q(z | u_k)

so it follows the aggregate posterior instead of pulling every code towards N(0, I). This module holds
only the u_k; `VAEModel.prior_components` encodes them with the model's encoder (the CVAE with its null
label, so the prior ignores the class) and `DiagonalGaussian.mixture_log_prob` (hf_vae/distributions.py)
is the mixture's log-density.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init


class VampPseudoInputs(nn.Module):
    """K learned images (K, C, H, W) in [0, 1], the points whose posteriors make up the VampPrior.

    Parameterised in pixel space as u = hardtanh(w, 0, 1) (the paper's choice, and pythae's): the
    pseudo-inputs live where the data live, so the encoder reads them as it reads images; a raw value w
    pushed outside [0, 1] gets no gradient and stays at the edge (black or white), as in the paper.
    """

    def __init__(self, config):
        super().__init__()
        shape = (config.num_pseudo_inputs, config.num_channels, config.image_size, config.image_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # The paper's initialisation (MNIST): near-blank images, N(0.05, 0.01^2) per pixel. transformers'
        # guarded init: a no-op on weights `from_pretrained` has loaded.
        init.normal_(self.weight, mean=0.05, std=0.01)

    def forward(self) -> torch.Tensor:
        return F.hardtanh(self.weight, 0.0, 1.0)
