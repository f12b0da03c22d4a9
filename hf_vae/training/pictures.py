"""The pictures a finished run leaves for people to look at, and its model card embeds.

    training_curves.png   every family: the logged loss terms over steps (log-scale steps, warm-up clipped)
    interpolation.png     VAE, CVAE: decoded straight lines between the posterior means of test images
                          of different classes
    latent_map.png        VAE, CVAE: test-set posterior means in 2-D (PCA above 2 dimensions), by label
    kl_per_dimension.png  VAE, CVAE: the evaluation's KL per latent dimension beside the activity
                          Cov_x E_q[z_u] and the active-unit threshold: posterior collapse at a glance
    codebook_usage.png    VQ-VAE: test-set code counts, sorted, with the perplexity and dead codes

A VQ-VAE gets no interpolation strip: code ids are unordered, so a path between two code grids is no
image path, and a line between the encoder's continuous outputs decodes only after quantization snaps
it to the nearest codes, a few abrupt jumps rather than a morph. The priors have no encoder: only curves.

Each `plot_*` function returns what it plotted, so tests check the data rather than pixels. Pictures
encode at most `PICTURE_EXAMPLES` test images (a few seconds on a CPU at mnist5k size), and
`save_pictures` turns any failure to draw into a warning: a picture never costs a finished run.
They are drawn with matplotlib's object-oriented API on an Agg canvas: no pyplot, no global backend.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..cards import CARD_IMAGES
from ..configuration_utils import has_label_names
from ..evaluation import ACTIVE_UNIT_THRESHOLD
from ..images import image_grid
from ..validation import check_float, check_int

__all__ = ["PICTURE_EXAMPLES", "plot_codebook_usage", "plot_interpolation", "plot_kl_per_dimension",
           "plot_latent_map", "plot_training_curves", "save_pictures"]

PICTURE_EXAMPLES = 1000  # test images the pictures encode at most
INTERPOLATION_ROWS, INTERPOLATION_STEPS = 4, 8


def save_pictures(model, test, run_dir: Path, metrics: dict, *, max_examples: int = PICTURE_EXAMPLES) -> list[str]:
    """Draw the pictures that apply to `model` into `run_dir` (file names from `cards.CARD_IMAGES`), the curves
    from `run_dir/logs/metrics.jsonl`; returns the file names written. `metrics` is the final evaluation
    (`evaluate`'s Metrics), whose numbers the KL picture plots. A picture that fails to draw is a warning,
    and leaves no (partial) file."""
    check_int("max_examples", max_examples, minimum=2)
    run_dir = Path(run_dir)
    # What applies follows what the model declares and what its evaluation measured, never its type.
    jobs = {"training_curves": lambda path: plot_training_curves(run_dir / "logs" / "metrics.jsonl", path)}
    if "interpolate" in type(model).capabilities:
        jobs["interpolation"] = lambda path: plot_interpolation(model, test, path, max_examples=max_examples)
    if "kl_per_dim" in metrics and "latent_activity" in metrics:  # a Gaussian posterior (VAE, CVAE evaluators)
        jobs["latent_map"] = lambda path: plot_latent_map(model, test, path, max_examples=max_examples)
        jobs["kl_per_dimension"] = lambda path: plot_kl_per_dimension(metrics, path)
    if "perplexity" in metrics and "codebook_size" in metrics:  # a codebook (the VQ-VAE evaluator)
        jobs["codebook_usage"] = lambda path: plot_codebook_usage(model, test, path, max_examples=max_examples)
    written = []
    for name, draw in jobs.items():
        path = run_dir / CARD_IMAGES[name]
        if _draw(name, draw, path) and path.is_file():  # (no log: no curves, and no warning)
            written.append(path.name)
    return written


def _draw(name: str, draw, path: Path) -> bool:
    """Run one drawing; a failure warns, removes what it left, and returns False."""
    try:
        draw(path)
        return True
    except Exception as error:  # noqa: BLE001 - a picture must never lose the run that drew it
        path.unlink(missing_ok=True)
        warnings.warn(f"could not draw {path.name} ({name}): {type(error).__name__}: {error}", stacklevel=3)
        return False


def _figure(width: float, height: float, columns: int = 1):
    """A matplotlib Figure on its own Agg canvas, and its `columns` axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _test_batches(model, test, max_examples: int, batch_size: int = 100):
    """(pixel_values on the model's device, labels (B,) or None) for the first `max_examples` test images."""
    from ..data import make_eval_loader

    for batch in make_eval_loader(test, batch_size, max_examples=max_examples):
        labels = batch.get("labels")
        yield batch["pixel_values"].to(model.device), None if labels is None else labels.to(model.device)


def _value(metric):
    """A `Metric`'s value, or that of its metrics.json dict."""
    return metric["value"] if isinstance(metric, dict) else metric.value


def _class_names(model, test) -> list[str] | None:
    """The config's class names (a CVAE's `id2label`), else the test split's ClassLabel names, else None."""
    if has_label_names(model.config):
        return [name for _, name in sorted(model.config.id2label.items())]
    return getattr(test, "label_names", None)


# ---------------------------------------------------------------------------------------------
# VAE / CVAE
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def plot_interpolation(model, test, path: Path, *, rows: int = INTERPOLATION_ROWS, steps: int = INTERPOLATION_STEPS,
                       max_examples: int = PICTURE_EXAMPLES) -> list[tuple[int, int]]:
    """`rows` strips: a test image, `steps` decodings of the line between its posterior mean and that of
    the next test image of another class (`model.interpolate`; a CVAE's condition moves along), the other
    image. Unlabelled data pairs consecutive images. Returns the (a, b) test indices of each row."""
    check_int("rows", rows, minimum=1)
    check_int("steps", steps, minimum=2)
    check_int("max_examples", max_examples, minimum=2)
    count = min(max_examples, 40 * rows)  # enough test images to find `rows` pairs of different classes
    images, labels = next(_test_batches(model, test, count, batch_size=count))
    pairs, used = [], set()
    for a in range(len(images)):
        if len(pairs) == rows:
            break
        if a in used:
            continue
        b = next((j for j in range(a + 1, len(images)) if j not in used
                  and (labels is None or labels[j] != labels[a])), None)
        if b is not None:
            pairs.append((a, b))
            used |= {a, b}
    if not pairs:
        raise ValueError(f"`test` must hold two images (of different classes) to interpolate, got {len(images)}")
    strips = []
    for a, b in pairs:
        label_kwargs = {"label_a": labels[a], "label_b": labels[b]} if model.is_conditional else {}
        path_images = model.interpolate(images[a], images[b], steps=steps, **label_kwargs)
        strips.append(torch.cat([images[a : a + 1], path_images.to(images.dtype), images[b : b + 1]]))
    scale = max(2, -(-64 // images.shape[-2]))  # small images (8x8 digits) blown up to 64 pixels or more
    image_grid(torch.cat(strips).cpu(), nrow=steps + 2, scale=scale).save(path)
    return pairs


def _posterior_means(model, test, max_examples: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, latent_dim) posterior means E_q[z] of the first test images (a CVAE's given their labels), labels."""
    means, labels = [], []
    for pixel_values, batch_labels in _test_batches(model, test, max_examples):
        label_kwargs = {"labels": batch_labels} if model.is_conditional else {}
        means.append(model.encode(pixel_values, **label_kwargs).latent_dist.mean.float().cpu())
        labels.append(batch_labels)
    has_labels = all(label is not None for label in labels)
    return torch.cat(means), torch.cat(labels).cpu() if has_labels else None


@torch.no_grad()
def plot_latent_map(model, test, path: Path, *, max_examples: int = PICTURE_EXAMPLES) -> dict:
    """Test-set posterior means in 2-D, one colour per label (names in the legend when known). Above 2
    latent dimensions the plane is scikit-learn's PCA of the means. Returns {"coordinates" (N, 2),
    "labels" (N,) or None, "explained_variance" (2,) or None, "legend" (the label texts)}."""
    check_int("max_examples", max_examples, minimum=1)
    means, labels = _posterior_means(model, test, max_examples)
    explained, legend = None, []
    if means.shape[1] > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=0)
        coordinates = pca.fit_transform(means.numpy())
        explained = pca.explained_variance_ratio_
        axis_names = [f"PC{i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(explained)]
    else:  # 1 dimension: on a line; 2: the latent plane itself
        coordinates = np.pad(means.numpy(), ((0, 0), (0, 2 - means.shape[1])))
        axis_names = ["z1", "z2" if means.shape[1] == 2 else "(latent_dim is 1)"]
    fig, (ax,) = _figure(5.5, 4.5)
    if labels is None:
        ax.scatter(coordinates[:, 0], coordinates[:, 1], s=6, alpha=0.6)
    else:
        from matplotlib import colormaps

        names = _class_names(model, test)
        colours = colormaps["tab10" if int(labels.max()) < 10 else "tab20"]
        for label in labels.unique().tolist():
            chosen = (labels == label).numpy()
            name = names[label] if names is not None and label < len(names) else str(label)
            legend.append(name)
            ax.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=6, alpha=0.6, color=colours(label % colours.N), label=name)
        ax.legend(fontsize=7, markerscale=2, loc="best", title="label", title_fontsize=7)
    given = ", label given to the encoder" if model.is_conditional else ""
    ax.set_title(f"posterior means E[z|x] of {len(means)} test images{given}", fontsize=9)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    _save(fig, path)
    return {"coordinates": coordinates, "labels": labels, "explained_variance": explained, "legend": legend}


def plot_kl_per_dimension(metrics: dict, path: Path, *, threshold: float = ACTIVE_UNIT_THRESHOLD) -> dict:
    """Two bar charts over the latent dimensions, from the evaluation's `metrics`: mean KL(q(z_u|x) || p(z_u))
    (nats; active dimensions in colour, inactive grey) and the activity Cov_x E_q[z_u] on a log axis with
    the active-unit `threshold` drawn. `metrics`: `evaluate`'s Metrics, or metrics.json's `"test"` dicts.
    Returns {"kl" (D,), "activity" (D,), "active" (D,) bool}."""
    check_float("threshold", threshold, minimum=0.0, exclusive_minimum=True)
    missing = [name for name in ("kl_per_dim", "latent_activity") if name not in metrics]
    if missing:
        raise ValueError(f"`metrics` must hold kl_per_dim and latent_activity (a VAE or CVAE evaluation), got {sorted(metrics)}")
    kl, activity = (np.asarray(_value(metrics[name]), dtype=float) for name in ("kl_per_dim", "latent_activity"))
    active = activity > threshold
    dims = np.arange(1, len(kl) + 1)
    colours = ["tab:blue" if a else "tab:gray" for a in active]
    fig, (ax_kl, ax_act) = _figure(max(7.0, 0.25 * len(kl)), 3.5, columns=2)
    ax_kl.bar(dims, kl, color=colours)
    ax_kl.set_title(f"KL per latent dimension: {int(active.sum())} of {len(kl)} active", fontsize=9)
    ax_kl.set_ylabel("mean KL (nats)")
    ax_act.bar(dims, np.maximum(activity, 1e-8), color=colours)  # (log axis: a dead unit's 0 drawn at 1e-8)
    ax_act.axhline(threshold, color="tab:red", linestyle="--", label=f"active-unit threshold {threshold:g}")
    ax_act.set_yscale("log")
    ax_act.set_title("activity Cov_x E[z_u]", fontsize=9)
    ax_act.legend(fontsize=7)
    for ax in (ax_kl, ax_act):
        ax.set_xlabel("latent dimension")
    _save(fig, path)
    return {"kl": kl, "activity": activity, "active": active}


# ---------------------------------------------------------------------------------------------
# VQ-VAE
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def plot_codebook_usage(model, test, path: Path, *, max_examples: int = PICTURE_EXAMPLES) -> dict:
    """How often each code is chosen over the first test images, sorted from most to least used (log
    axis), with the perplexity and dead codes (`VectorQuantizer.usage_statistics`) in the title.
    Returns {"counts" (K,) in code order, "perplexity", "dead_codes", "num_examples"}."""
    check_int("max_examples", max_examples, minimum=1)
    codebook_size = model.config.codebook_size
    counts, count = torch.zeros(codebook_size, dtype=torch.float64), 0
    for pixel_values, _ in _test_batches(model, test, max_examples):
        counts += torch.bincount(model.encode_to_indices(pixel_values).flatten().cpu(), minlength=codebook_size).double()
        count += len(pixel_values)
    usage = model.quantizer.usage_statistics(counts.float())
    perplexity, dead = float(usage["perplexity"]), int(usage["dead_codes"])
    ordered = counts.sort(descending=True).values.numpy()
    fig, (ax,) = _figure(max(6.0, 0.02 * codebook_size), 3.5)
    ax.bar(np.arange(codebook_size), np.maximum(ordered, 0.5), width=1.0, color=["tab:blue" if c > 0 else "tab:gray" for c in ordered])
    ax.set_yscale("log")
    ax.set_title(f"codebook usage over {count} test images: perplexity {perplexity:.1f} of {codebook_size}, "
                 f"{dead} dead codes", fontsize=9)
    ax.set_xlabel("codes, most used first")
    ax.set_ylabel("assignments")
    _save(fig, path)
    return {"counts": counts.numpy(), "perplexity": perplexity, "dead_codes": dead, "num_examples": count}


# ---------------------------------------------------------------------------------------------
# Every family: the training curves
# ---------------------------------------------------------------------------------------------


def _series(rows: list[dict]) -> dict[str, tuple[list, list]]:
    """key -> (steps, values) of every number in the JSONL log rows."""
    series: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                steps, values = series.setdefault(key, ([], []))
                steps.append(row["step"])
                values.append(value)
    return series


def _curve_panels(series: dict) -> dict[str, dict[str, tuple[list, list]]]:
    """Panel title -> curve label -> (steps, values). Every curve is a cost in nats, lower is better: the
    ELBO is drawn as -ELBO, beside the reconstruction and KL terms it is the sum of."""
    train = ("loss", "-elbo", "reconstruction_loss", "codebook_loss", "commitment_loss")
    if "train/reconstruction_loss" in series and "train/kl_loss" in series:
        steps, recon = series["train/reconstruction_loss"]
        series["train/-elbo"] = (steps, [r + k for r, k in zip(recon, series["train/kl_loss"][1])])
    # The held-out curve: the validation split, or the test split when the run carved none.
    split = "validation" if any(k.startswith("validation/") for k in series) else "test"
    if f"{split}/elbo" in series:
        steps, elbo = series[f"{split}/elbo"]
        series[f"{split}/-elbo"] = (steps, [-value for value in elbo])
    held_out = ("-elbo", "nll", "reconstruction_loss", "kl", "loss")
    panels = {
        "train (nats, lower is better)": {f"train/{k}": series[f"train/{k}"] for k in train if f"train/{k}" in series},
        "train KL (nats)": {"train/kl_loss": series["train/kl_loss"]} if "train/kl_loss" in series else {},
        f"{split} (nats, lower is better)": {f"{split}/{k}": series[f"{split}/{k}"] for k in held_out if f"{split}/{k}" in series},
    }
    return {title: curves for title, curves in panels.items() if curves}


def _clipped_ylim(curves: dict[str, tuple[list, list]], min_points: int = 20) -> tuple[float, float] | None:
    """(bottom, top) that fits every curve from a quarter of the log step axis on, so the warm-up's large early
    values run off the top instead of squashing the rest; None when nothing would be clipped, or for sparse
    curves (fewer than `min_points` points: a few evaluations, each worth seeing)."""
    steps = [step for xs, _ in curves.values() for step in xs]
    if max(len(xs) for xs, _ in curves.values()) < min_points:
        return None
    first = max(min(steps), 1)
    quarter = first * (max(steps) / first) ** 0.25
    values = [v for xs, ys in curves.values() for v in ys if np.isfinite(v)]
    later = [v for xs, ys in curves.values() for x, v in zip(xs, ys) if x >= quarter and np.isfinite(v)]
    if not later or max(later) >= max(values):
        return None
    bottom, top = min(values), max(later)
    margin = 0.08 * (top - bottom or abs(top) or 1.0)
    return bottom - margin, top + margin


def plot_training_curves(log_path: Path, out_path: Path) -> dict[str, dict[str, tuple[list, list]]]:
    """The training log's loss terms over steps, one sign convention per panel: costs in nats, lower is
    better (-ELBO with its reconstruction and KL terms). The step axis is log-scale and the warm-up clipped
    (`_clipped_ylim`): on linear axes the first steps' fall squashes the rest of the run. Returns what was
    plotted, panel title -> curve -> (steps, values) (`{}`, and no file, without a log)."""
    log_path = Path(log_path)
    if not log_path.exists():
        return {}
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    panels = _curve_panels(_series(rows))
    if not panels:
        return {}
    fig, axes = _figure(5 * len(panels), 3.5, columns=len(panels))
    for ax, (title, curves) in zip(axes, panels.items()):
        for label, (steps, values) in curves.items():
            ax.plot(steps, values, label=label, marker="." if len(steps) < 20 else None)
        ax.set_xscale("log")
        limits = _clipped_ylim(curves)
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_title(title + (" (warm-up clipped)" if limits is not None else ""), fontsize=9)
        ax.set_xlabel("step (log scale)")
        ax.legend(fontsize=7)
    _save(fig, out_path)
    return panels
