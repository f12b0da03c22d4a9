"""diffusers `DiffusionPipeline`s over hf_vae models: VAE / CVAE sampling, and two-stage VQ-VAE + token prior.

    import hf_vae                                                   # no diffusers import yet (see below)
    from hf_vae.pipelines import VAEGenerationPipeline
    pipe = VAEGenerationPipeline(vae=model)
    images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0)).images
    images = pipe(batch_size=2, generator=[torch.Generator().manual_seed(s) for s in (0, 1)]).images
    z = pipe(batch_size=4, output_type="latent").images             # the latents, (4, latent_dim)
    pipe.save_pretrained("vae-pipe")                               # model_index.json + vae/
    pipe = DiffusionPipeline.from_pretrained("vae-pipe")           # or a Hub repo id

Arguments follow `DDPMPipeline.__call__` where they mean the same thing: `batch_size` (how many images),
`generator` (one, or a list of one per image: image i is then the image `batch_size=1` draws with
`generator[i]`, as diffusers' `randn_tensor` does), `output_type` ("pil", "np", "pt", or "latent": what
the decoder reads, without decoding) and `return_dict`. `latents=` takes that "latent" output back: a
VAE's z (B, latent_dim), or a prior's token grid (B, grid, grid), decoded as given (nothing is drawn).
There is no `num_inference_steps`: a VAE decodes in one pass and a prior draws one token per grid position.

Loading: model_index.json names each component `["hf_vae", "<ModelClass>"]`. diffusers imports a
component's library only if it is in its `LOADABLE_CLASSES`, and finds the pipeline class named in
`_class_name` only in the `diffusers` namespace; `register_with_diffusers()` adds both. It runs when this
module is imported, which `import hf_vae` arranges for the moment diffusers' `DiffusionPipeline` is
(`hf_vae.pipelines`), so `import hf_vae` itself never imports diffusers.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel

from ..images import OUTPUT_TYPES, format_images
from ..modeling_utils import indices_to_pixels
from ..validation import check_choice, check_float, check_generators, check_indices, check_int, check_latents
from .pipeline_utils import as_labels, check_capability, is_code_prior, resolve_vqvae

#: diffusers' output types: the image types, and "latent" (what the decoder reads, not decoded).
DIFFUSERS_OUTPUT_TYPES = (*OUTPUT_TYPES, "latent")


def resolve_batch_size(batch_size, num_samples, latents, generator) -> int:
    """How many images a call makes: `batch_size`, or its alias `num_samples`; when neither is given, the
    rows of `latents`, else the length of a list of generators, else 1. Conflicting values raise."""
    if num_samples is not None:
        if batch_size is not None and batch_size != num_samples:
            raise ValueError(f"`num_samples` must be None or equal `batch_size` (it is an alias of `batch_size`), "
                             f"got num_samples={num_samples!r} and batch_size={batch_size!r}")
        batch_size = num_samples
    if batch_size is not None:
        check_int("batch_size", batch_size, minimum=1)
    rows = latents.shape[0] if isinstance(latents, torch.Tensor) and latents.ndim > 0 else None
    if batch_size is None:
        batch_size = rows if rows is not None else len(generator) if isinstance(generator, (list, tuple)) else 1
    elif rows is not None and rows != batch_size:
        raise ValueError(f"`latents` must have batch_size={batch_size} rows, got {rows}")
    check_generators(generator, batch_size)
    return batch_size


def check_unused_with_latents(**arguments) -> None:
    """Given `latents`, nothing is drawn: the drawing arguments, `name=(value, default)`, must keep their
    defaults (a value that would change nothing raises rather than being silently ignored)."""
    for name, (value, default) in arguments.items():
        if (value is not None) if default is None else (value != default):
            raise ValueError(f"`{name}` must be {default!r} when `latents` are given (they are decoded as given, "
                             f"nothing is drawn), got {value!r}")


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

    Components: `vae` (a `VAEModel` or `CVAEModel`). One decoder pass: z ~ N(0, temperature² I) (or the
    `latents` given), then the mean of p(x|z[, y]) (`vae.decode`); with one generator, exactly `vae.sample`.
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
        batch_size: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        labels: int | str | list[int | str] | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
        *,
        num_samples: int | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Draw `batch_size` images.

        Args:
            batch_size: number of images (default 1, or the rows of `latents` / the length of a list of
                generators). The name is `DDPMPipeline`'s, so diffusers code (`pipe(batch_size=4)`, `pipe(4)`)
                runs unchanged; `num_samples`, the name of `model.sample` and of earlier releases, is an
                alias kept working (give one of them, or both equal).
            generator: one generator drives every draw, or a list of `batch_size`, one per image (image i is
                the image `batch_size=1` gives with `generator[i]`).
            latents: z (B, latent_dim), decoded as given (`generator` and `temperature` must then be unset);
                e.g. the `output_type="latent"` output of an earlier call.
            labels: CVAE only: one class id or class name (`vae.config.label_names`) for every image, or one
                per image (a list mixing ids and names, or an integer tensor).
            guidance_scale: CVAE only: classifier-free guidance (1 = plain conditional decoding).
            temperature: scale of the prior noise (< 1: more typical, less varied images).
            output_type: `"pil"` (list of PIL images), `"np"` (float32 (B, H, W, C) in [0, 1]), `"pt"`
                (tensor (B, C, H, W) in [0, 1]) or `"latent"` (the latents z (B, latent_dim), not decoded).
            return_dict: return an `ImagePipelineOutput` (default) or a tuple `(images,)`.
        """
        check_choice("output_type", output_type, DIFFUSERS_OUTPUT_TYPES)
        batch_size = resolve_batch_size(batch_size, num_samples, latents, generator)
        check_float("guidance_scale", guidance_scale, minimum=0.0)
        check_float("temperature", temperature, minimum=0.0, exclusive_minimum=True)
        label_ids = as_labels(self.vae, labels, batch_size)
        device = self._execution_device
        if latents is None:
            # (B, latent_dim) standard normal draws, one row per generator when given a list.
            latents = temperature * randn_tensor(
                (batch_size, self.vae.config.latent_dim), generator=generator, device=device, dtype=self.vae.dtype
            )
        else:
            check_unused_with_latents(generator=(generator, None), temperature=(temperature, 1.0))
            check_latents(latents, (self.vae.config.latent_dim,), dtype=self.vae.dtype)
            latents = latents.to(device)
        if output_type == "latent":
            images = latents
        else:
            images = format_images(self.vae.decode(latents, label_ids, guidance_scale=guidance_scale).sample, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


class VQGenerationPipeline(_CardPipeline):
    """Two-stage generation: a token prior (PixelCNN or transformer) samples a VQ-VAE code grid, then the
    VQ-VAE decodes it (as `hf_vae.generation.generate_images`).

    Components: `vqvae` (a `VQVAEModel`) and `prior` (a `PixelCNNPriorModel` / `TransformerPriorModel`
    whose vocabulary and grid are the VQ-VAE's codebook and code grid). A prior over quantized pixels
    needs no VQ-VAE: pass `vqvae=None`; its token grid is then the image, pixel levels mapped to [0, 1].
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
        batch_size: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        labels: int | str | list[int | str] | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        *,
        num_samples: int | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Draw `batch_size` images: prior samples (raster order), decoded by the VQ-VAE.

        Args:
            batch_size, num_samples, temperature, return_dict: as in `VAEGenerationPipeline`.
            generator: one generator, or a list of `batch_size`: the prior then samples one image per
                generator, one after the other (image i is the image `batch_size=1` gives with
                `generator[i]`), which takes `batch_size` times as many prior passes as one generator.
            latents: a token grid (B, grid_size, grid_size) of ids in [0, vocab_size), decoded as given
                (the prior is not run: `generator`, `labels`, `guidance_scale`, `temperature`, `top_k` and
                `top_p` must be unset); e.g. the `output_type="latent"` output of an earlier call.
            labels, guidance_scale: a class-conditional prior's classes (ids or class names, as in
                `VAEGenerationPipeline`) and classifier-free guidance (needs a prior trained with label dropout).
            top_k, top_p: truncate each token's distribution (`hf_vae.sampling`).
            output_type: `"pil"`, `"np"`, `"pt"` (as in `VAEGenerationPipeline`) or `"latent"` (the token
                grid (B, grid_size, grid_size) long, not decoded).
        """
        check_choice("output_type", output_type, DIFFUSERS_OUTPUT_TYPES)
        batch_size = resolve_batch_size(batch_size, num_samples, latents, generator)
        options = dict(guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p)
        if latents is None:
            tokens = self._sample_tokens(batch_size, generator, labels, **options)
        else:
            check_unused_with_latents(generator=(generator, None), labels=(labels, None), guidance_scale=(guidance_scale, 1.0),
                                      temperature=(temperature, 1.0), top_k=(top_k, None), top_p=(top_p, None))
            check_indices(latents, self.prior.config.vocab_size, self.prior.config.grid_size, name="latents")
            tokens = latents
        images = tokens if output_type == "latent" else format_images(self._decode_tokens(tokens), output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def _sample_tokens(self, batch_size: int, generator, labels, **options) -> torch.Tensor:
        """Token grids (B, grid, grid) from the prior (`prior.sample`, which checks `options` before drawing)."""
        label_ids = as_labels(self.prior, labels, batch_size)
        if not isinstance(generator, (list, tuple)):
            progress = not getattr(self, "_progress_bar_config", {}).get("disable", False)
            return self.prior.sample(batch_size, generator=generator, labels=label_ids, progress=progress, **options)
        # The prior draws each token of every row from one generator, so a generator per image means one
        # image at a time; a bar over the images replaces the bar over grid positions.
        grids = [
            self.prior.sample(1, generator=generator[i], labels=None if label_ids is None else label_ids[i : i + 1],
                              progress=False, **options)
            for i in self.progress_bar(range(batch_size))
        ]
        return torch.cat(grids)

    def _decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B, grid, grid) -> images (B, C, H, W) in [0, 1]: the VQ-VAE decoder, or for pixel
        tokens the pixel levels t / (levels - 1)."""
        if self.vqvae is None:
            return indices_to_pixels(tokens, self.prior.config.pixel_levels)
        return self.vqvae.decode_from_indices(tokens.to(self.vqvae.device))


def register_with_diffusers() -> None:
    """Let diffusers load hf_vae components and pipelines by name (from a folder or a Hub repo id).

    Idempotent; run when this module is imported.

    - `LOADABLE_CLASSES["hf_vae"]`: `save_pretrained` records components as `["hf_vae", "VAEModel"]`
      (not the full module path), and `from_pretrained` / `download` accept the library `hf_vae`, import
      it, and load each class with its `from_pretrained`. Without it, loading by repo id fails with
      "`<component>/hf_vae....py` ... is not a module in 'diffusers/pipelines'".
    - `diffusers.VAEGenerationPipeline` / `diffusers.VQGenerationPipeline`: `DiffusionPipeline.from_pretrained`
      looks the `_class_name` of model_index.json up in the `diffusers` module.
    """
    import diffusers
    from diffusers.pipelines import pipeline_loading_utils

    from ..families import load_families
    from ..modeling_utils import HfVaePreTrainedModel

    load_families()  # the shipped families' model classes are imported on first need
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


register_with_diffusers()
