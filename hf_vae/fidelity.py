"""Conditional fidelity: how often a class-conditional sampler draws what it was asked for, judged by a
classifier (the number the CVAE evaluator and the priors benchmark report)."""

from __future__ import annotations

import numbers
from typing import Callable

import torch

from .evaluation import Metric


def conditional_fidelity(
    sampler: torch.nn.Module | Callable[..., torch.Tensor],
    classifier: torch.nn.Module,
    *,
    num_per_label: int = 100,
    num_classes: int | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    output: str = "mean",
    per_label: bool = False,
) -> Metric | tuple[Metric, Metric]:
    """Fraction of class-conditional samples that `classifier` assigns to the label they were drawn for.

    Args:
        sampler: a class-conditional hf_vae model (anything with `sample(n, labels=..., guidance_scale=...,
            generator=..., output=...)` and `config.num_classes`, e.g. a CVAE), or a function
            `labels (n,) long -> images (n, C, H, W) in [0, 1]`, e.g. a two-stage VQ-VAE + prior
            sampler. Given a `generator`, a function is called `sampler(labels, generator=generator)`.
        classifier: returns logits (n, num_classes) for images (n, C, H, W), e.g.
            `hf_vae.reference_classifier.ReferenceClassifier`.
        num_per_label: N samples for each label 0..num_classes-1.
        num_classes: labels to draw; defaults to the model's `config.num_classes`, else the classifier's
            `num_classes`.
        guidance_scale: classifier-free guidance of the model's sampler (1 = none); a sampler function
            carries its own, so it must be left at 1 there.
        generator: drives the samples (reproducible with a seeded generator).
        batch_size: samples per sampler / classifier call.
        output: `"mean"` (smooth images, the default) or `"sample"` (pixels drawn from p(x|z)); models only.
        per_label: also return the per-label fractions (a list metric).

    Returns:
        A `Metric` (fraction in [0, 1]), or `(metric, per_label_metric)` with `per_label=True`.
    """
    if isinstance(num_per_label, bool) or not isinstance(num_per_label, int) or num_per_label < 1:
        raise ValueError(f"`num_per_label` must be an int >= 1, got {num_per_label!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real) or not guidance_scale >= 0:
        raise ValueError(f"`guidance_scale` must be a number >= 0, got {guidance_scale!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator or None, got {type(generator).__name__}")
    if not isinstance(classifier, torch.nn.Module) and not callable(classifier):
        raise ValueError(f"`classifier` must be a module returning logits, got {type(classifier).__name__}")
    # An hf_vae model declares what it can do (the family protocol); anything else callable is a function.
    is_model = "sample" in (getattr(type(sampler), "capabilities", None) or ()) and sampler.is_conditional
    if is_model:
        num_classes = num_classes or sampler.config.num_classes

        def draw(labels):
            return sampler.sample(len(labels), labels=labels.to(sampler.device), guidance_scale=guidance_scale,
                                  generator=generator, output=output)

        what = f"{type(sampler).__name__} sample(output={output!r}), guidance scale {guidance_scale:g}"
    elif callable(sampler):
        if guidance_scale != 1:
            raise ValueError(f"`guidance_scale` must be 1 for a sampler function (it carries its own guidance), got {guidance_scale!r}")
        num_classes = num_classes or getattr(classifier, "num_classes", None)

        def draw(labels):
            return sampler(labels) if generator is None else sampler(labels, generator=generator)

        what = getattr(sampler, "__name__", type(sampler).__name__)
    else:
        raise ValueError(f"`sampler` must be a class-conditional hf_vae model or a function labels -> images, got {type(sampler).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1 (or known from the model or classifier), got {num_classes!r}")

    labels = torch.arange(num_classes).repeat_interleave(num_per_label)
    classifier_device = next(classifier.parameters()).device if isinstance(classifier, torch.nn.Module) else torch.device("cpu")
    was_training = getattr(classifier, "training", False)
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    correct = torch.zeros(num_classes)
    try:
        with torch.no_grad():
            for chunk in labels.split(batch_size):
                images = draw(chunk)
                if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != len(chunk):
                    got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                    raise ValueError(f"`sampler` must return images of shape ({len(chunk)}, C, H, W), got {got}")
                predicted = classifier(images.to(classifier_device)).argmax(dim=1).cpu()
                correct += torch.bincount(chunk[predicted == chunk], minlength=num_classes).float()
    finally:
        if isinstance(classifier, torch.nn.Module):
            classifier.train(was_training)
    estimator = f"reference classifier on {num_per_label} samples per label; {what}"
    metric = Metric(float(correct.sum() / len(labels)), "fraction", estimator,
                    "Conditional fidelity: samples classified as the requested label")
    if not per_label:
        return metric
    per_label_metric = Metric((correct / num_per_label).tolist(), "fraction", estimator,
                              "Conditional fidelity per label 0..num_classes-1")
    return metric, per_label_metric


# ---------------------------------------------------------------------------------------------
# VQ-VAE: reconstruction quality, the cost of the code, codebook health over the whole split
# ---------------------------------------------------------------------------------------------
