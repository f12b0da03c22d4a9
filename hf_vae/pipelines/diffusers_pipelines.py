"""diffusers `DiffusionPipeline`s over hf_vae models: VAE / CVAE sampling, and two-stage VQ-VAE + token prior.

    from diffusers import DiffusionPipeline
    import hf_vae                                                   # registers hf_vae with diffusers
    pipe = VAEGenerationPipeline(vae=model)
    images = pipe(num_samples=4, generator=torch.Generator().manual_seed(0)).images
    pipe.save_pretrained("vae-pipe")                               # model_index.json + vae/
    pipe = DiffusionPipeline.from_pretrained("vae-pipe")           # or a Hub repo id

Loading: model_index.json names each component `["hf_vae", "<ModelClass>"]`. diffusers imports a
component's library only if it is in its `LOADABLE_CLASSES`, and finds the pipeline class named in
`_class_name` only in the `diffusers` namespace; `register_with_diffusers()` (run on `import hf_vae`
when diffusers is installed) adds both, so a folder or a repo id loads with hf_vae installed.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from transformers import PreTrainedModel

from ..images import check_output_type, format_images
from .pipeline_utils import check_capability, is_code_prior, resolve_vqvae, sample_images


class _CardPipeline(DiffusionPipeline):
    """A `DiffusionPipeline` whose `push_to_hub` (and `save_pretrained(push_to_hub=True)`) uploads the hf_vae
    card of its `card_component` (`hf_vae.hub.write_push_card`) instead of diffusers' boilerplate README.md."""

    card_component = ""

    def _upload_folder(self, working_dir, repo_id, token=None, commit_message=None, create_pr=False, subfolder=None):
        if not subfolder:  # the repo's own README.md, not a component pushed alone
            from ..hub import write_push_card

            write_push_card(working_dir, repo_id, getattr(self, self.card_component), subfolder=self.card_component)
        return super()._upload_folder(working_dir, repo_id, token=token, commit_message=commit_message,
                                      create_pr=create_pr, subfolder=subfolder)


class VAEGenerationPipeline(_CardPipeline):
    """Samples from a VAE / β-VAE, or a CVAE (class-conditional with `labels`, classifier-free `guidance_scale`).

    Components: `vae` (a `VAEModel` or `CVAEModel`). One decoder pass: z ~ N(0, temperature² I), then the
    mean of p(x|z[, y]) (`model.sample`).
    """

    model_cpu_offload_seq = "vae"
    card_component = "vae"

    def __init__(self, vae: PreTrainedModel):
        super().__init__()
        check_capability(vae, "sample", "VAEGenerationPipeline", name="vae")
        if type(vae).input_kind != "images":
            raise ValueError(f"`vae` must be an image model (VAE, CVAE), got {type(vae).__name__}: use VQGenerationPipeline for a token prior")
        self.register_modules(vae=vae)
        self.vae.eval()

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        labels: int | str | list[int | str] | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Draw `num_samples` images.

        Args:
            num_samples: number of images.
            generator: drives every draw (same generator state -> same images).
            labels: CVAE only: one class id or class name (`vae.config.label_names`) for every image, or one
                per image (a list mixing ids and names, or an integer tensor).
            guidance_scale: CVAE only: classifier-free guidance (1 = plain conditional decoding).
            temperature: scale of the prior noise (< 1: more typical, less varied images).
            output_type: `"pil"` (list of PIL images), `"np"` (float32 (B, H, W, C) in [0, 1]) or `"pt"`
                (tensor (B, C, H, W) in [0, 1]).
            return_dict: return an `ImagePipelineOutput` (default) or a tuple `(images,)`.
        """
        check_output_type(output_type)
        images = sample_images(self.vae, num_samples, generator=generator, labels=labels,
                               guidance_scale=guidance_scale, temperature=temperature)
        images = format_images(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


class VQGenerationPipeline(_CardPipeline):
    """Two-stage generation: a token prior (PixelCNN or transformer) samples a VQ-VAE code grid, then the
    VQ-VAE decodes it (`hf_vae.generation.generate_images`).

    Components: `vqvae` (a `VQVAEModel`) and `prior` (a `PixelCNNPriorModel` / `TransformerPriorModel`
    whose vocabulary and grid are the VQ-VAE's codebook and code grid). A prior over quantized pixels
    needs no VQ-VAE: pass `vqvae=None`.
    """

    model_cpu_offload_seq = "prior->vqvae"
    card_component = "prior"
    _optional_components = ["vqvae"]

    def __init__(self, vqvae: PreTrainedModel | None, prior: PreTrainedModel):
        super().__init__()
        check_capability(prior, "sample", "VQGenerationPipeline", name="prior")
        if type(prior).input_kind != "tokens":
            raise ValueError(f"`prior` must be a token prior, got {type(prior).__name__}: use VAEGenerationPipeline for a VAE")
        if vqvae is None and is_code_prior(prior):
            raise ValueError("`vqvae` must be the VQ-VAE whose codes `prior` models, got None")
        if vqvae is not None:
            vqvae = resolve_vqvae(prior, vqvae)  # checks codebook size and grid against the prior
        self.register_modules(vqvae=vqvae, prior=prior)
        self.prior.eval()

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        labels: int | str | list[int | str] | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Draw `num_samples` images: prior samples (raster order), decoded by the VQ-VAE.

        Args:
            num_samples, generator, temperature, output_type, return_dict: as in `VAEGenerationPipeline`.
            labels, guidance_scale: a class-conditional prior's classes (ids or class names, as in
                `VAEGenerationPipeline`) and classifier-free guidance (needs a prior trained with label dropout).
            top_k, top_p: truncate each token's distribution (`hf_vae.sampling`).
        """
        check_output_type(output_type)
        progress = not getattr(self, "_progress_bar_config", {}).get("disable", False)
        images = sample_images(self.prior, num_samples, vqvae=self.vqvae, progress=progress, generator=generator,
                               labels=labels, guidance_scale=guidance_scale, temperature=temperature,
                               top_k=top_k, top_p=top_p)
        images = format_images(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def register_with_diffusers() -> None:
    """Let diffusers load hf_vae components and pipelines by name (from a folder or a Hub repo id).

    - `LOADABLE_CLASSES["hf_vae"]`: `save_pretrained` records components as `["hf_vae", "VAEModel"]`
      (not the full module path), and `from_pretrained` / `download` accept the library `hf_vae`, import
      it, and load each class with its `from_pretrained`. Without it, loading by repo id fails with
      "`<component>/hf_vae....py` ... is not a module in 'diffusers/pipelines'".
    - `diffusers.VAEGenerationPipeline` / `diffusers.VQGenerationPipeline`: `DiffusionPipeline.from_pretrained`
      looks the `_class_name` of model_index.json up in the `diffusers` module.
    """
    import diffusers
    from diffusers.pipelines import pipeline_loading_utils

    from ..modeling_utils import HfVaePreTrainedModel

    # diffusers finds a component's load method through a base class named here that the library
    # (`import hf_vae`) exposes: every public model class (the families) is its own base.
    loadable, pending = {}, list(HfVaePreTrainedModel.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("hf_vae."):
            loadable[cls.__name__] = ["save_pretrained", "from_pretrained"]
    pipeline_loading_utils.LOADABLE_CLASSES.setdefault("hf_vae", {}).update(loadable)
    # The same dict object is imported by pipeline_utils: update in place, never rebind.
    pipeline_loading_utils.ALL_IMPORTABLE_CLASSES.update(loadable)
    for pipeline_class in (VAEGenerationPipeline, VQGenerationPipeline):
        setattr(diffusers, pipeline_class.__name__, pipeline_class)
