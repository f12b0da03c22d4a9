"""A small reference digit classifier: the judge of conditional samples.

`conditional_fidelity` (in `hf_vae/evaluation.py`) asks "what fraction of the samples drawn for label
y does this classifier call y?". The classifier is deliberately independent of every generative model:
a plain CNN trained once, with a fixed seed, on the train split of a labelled image dataset (mnist5k
for the benchmarks), and saved as `model.safetensors` + `config.json` (its architecture, how it was
trained and its measured test accuracy).

Generated images are either grey (the mean of p(x|z)) or binary (a draw from a Bernoulli decoder,
VQ-VAE codes decoded and sampled, ...). The classifier therefore trains on both: each training image
is binarized with probability `binarize_probability`, and shifted by up to `max_shift` pixels so that
slightly off-centre samples are not penalised.

    classifier, report = train_reference_classifier("mnist5k", seed=0)
    classifier.save_pretrained("benchmarks/reference_classifier")
    classifier = ReferenceClassifier.from_pretrained("benchmarks/reference_classifier")
    labels = classifier.predict(images)          # images (B, 1, 28, 28) in [0, 1]
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_generator, check_pixel_values

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ReferenceClassifier(nn.Module):
    """CNN: three 3x3 conv + batch-norm stages (the first two followed by 2x2 max-pooling), then one
    linear layer from the (H/4, W/4) feature map to `num_classes` logits.

    Args:
        image_size: side of the square images it classifies (checked on input).
        num_channels: image channels.
        num_classes: number of labels.
        hidden_channels: widths of the three conv stages.
        dropout: dropout before the linear layer (training only).
        metadata: how it was trained and what it scored (written to config.json, informational).
    """

    def __init__(self, image_size: int = 28, num_channels: int = 1, num_classes: int = 10,
                 hidden_channels: tuple[int, ...] = (32, 64, 32), dropout: float = 0.25,
                 metadata: dict | None = None):
        super().__init__()
        for name, value, minimum in (("image_size", image_size, 4), ("num_channels", num_channels, 1), ("num_classes", num_classes, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
        if len(hidden_channels) != 3 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden_channels):
            raise ValueError(f"`hidden_channels` must be three ints >= 1, got {hidden_channels!r}")
        self.image_size, self.num_channels, self.num_classes = image_size, num_channels, num_classes
        self.hidden_channels, self.dropout = tuple(hidden_channels), dropout
        self.metadata = dict(metadata or {})
        w1, w2, w3 = hidden_channels
        self.features = nn.Sequential(
            nn.Conv2d(num_channels, w1, 3, padding=1), nn.BatchNorm2d(w1), nn.ReLU(), nn.MaxPool2d(2),  # H/2
            nn.Conv2d(w1, w2, 3, padding=1), nn.BatchNorm2d(w2), nn.ReLU(), nn.MaxPool2d(2),  # H/4
            nn.Conv2d(w2, w3, 3, padding=1), nn.BatchNorm2d(w3), nn.ReLU(), nn.Flatten(),
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(w3 * side * side, num_classes))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W) in [0, 1]."""
        check_pixel_values(pixel_values, self.num_channels, self.image_size)
        return self.head(self.features(pixel_values))

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Predicted labels (B,) long, in eval mode, on the images' device."""
        was_training = self.training
        self.eval()
        try:
            out = [self(chunk.to(self.device)).argmax(dim=1) for chunk in pixel_values.split(batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out).to(pixel_values.device)

    @torch.no_grad()
    def accuracy(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of `pixel_values` whose predicted label is `labels`."""
        return float((self.predict(pixel_values) == labels.to(pixel_values.device)).float().mean())

    # -- persistence ------------------------------------------------------------------------------

    def get_config(self) -> dict:
        return {"image_size": self.image_size, "num_channels": self.num_channels, "num_classes": self.num_classes,
                "hidden_channels": list(self.hidden_channels), "dropout": self.dropout, "metadata": self.metadata}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` and `model.safetensors` into `directory`."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, directory / WEIGHTS_NAME)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> ReferenceClassifier:
        """Load a classifier saved by `save_pretrained`, in eval mode."""
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
            raise ValueError(f"`directory` must hold {CONFIG_NAME} and {WEIGHTS_NAME}, got {str(directory)!r}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        config["hidden_channels"] = tuple(config["hidden_channels"])
        model = cls(**config)
        model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        return model.to(device).eval()


def load_reference_classifier(directory: str | os.PathLike, device: str | torch.device = "cpu") -> ReferenceClassifier:
    """`ReferenceClassifier.from_pretrained(directory)`."""
    return ReferenceClassifier.from_pretrained(directory, device=device)


def _load_tensors(dataset: str, split: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    from . import data as hf_data

    tensors = hf_data.load_tensors(hf_data.load_split(dataset, split, **kwargs))
    if "labels" not in tensors:
        raise ValueError(f"`dataset` must have a label column to train a classifier, got {dataset!r} without one")
    return tensors["pixel_values"], tensors["labels"]


def _augment(images: torch.Tensor, max_shift: int, binarize_probability: float, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `max_shift` pixels (zero fill) and, per image, binarization with
    probability `binarize_probability`."""
    if max_shift > 0:
        b, _, h, w = images.shape
        padded = F.pad(images, [max_shift] * 4)
        dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None])[:, :, None]  # (B, H, 1)
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, :]  # (B, 1, W)
        images = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if binarize_probability > 0:
        binary = torch.bernoulli(images, generator=generator)
        pick = torch.rand(images.shape[0], generator=generator) < binarize_probability
        images = torch.where(pick[:, None, None, None], binary, images)
    return images


def train_reference_classifier(
    dataset: str = "mnist5k",
    *,
    train_split: str = "train",
    test_split: str = "test",
    seed: int = 0,
    epochs: int = 12,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
    hidden_channels: tuple[int, ...] = (32, 64, 32),
    max_shift: int = 2,
    binarize_probability: float = 0.5,
    generator: torch.Generator | None = None,
    log=None,
) -> tuple[ReferenceClassifier, dict]:
    """Train a `ReferenceClassifier` on `train_split` of `dataset` (grey images in [0, 1]) and measure it on `test_split`.

    AdamW with a one-cycle cosine schedule; everything random (initial weights, shuffling,
    augmentation) follows `seed` (or `generator`). Returns the classifier in eval mode and a report
    `{"test_accuracy", "test_accuracy_binarized", "num_train", "num_test", ...}`, which is also stored
    in `classifier.metadata` (and so in its config.json).
    """
    check_generator(generator)
    generator = generator or torch.Generator().manual_seed(seed)
    # Weights, dropout and the data loaders draw from the global RNG: seed it from `generator`, inside
    # fork_rng so that the caller's global RNG is left as it was.
    with torch.random.fork_rng():
        return _train(dataset, train_split, test_split, seed, epochs, batch_size, learning_rate, weight_decay,
                      hidden_channels, max_shift, binarize_probability, generator, log)


def _train(dataset, train_split, test_split, seed, epochs, batch_size, learning_rate, weight_decay, hidden_channels,
           max_shift, binarize_probability, generator, log) -> tuple[ReferenceClassifier, dict]:
    train_x, train_y = _load_tensors(dataset, train_split)
    test_x, test_y = _load_tensors(dataset, test_split)
    test_binary = torch.bernoulli(test_x, generator=torch.Generator().manual_seed(seed + 1))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # initial weights
    model = ReferenceClassifier(image_size=train_x.shape[-1], num_channels=train_x.shape[1],
                                num_classes=num_classes, hidden_channels=tuple(hidden_channels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            images = _augment(train_x[index], max_shift, binarize_probability, generator)
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # dropout
            logits = model(images)
            loss = F.cross_entropy(logits, train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += len(index)
            correct += int((logits.argmax(1) == train_y[index]).sum())
            loss_sum += float(loss.detach()) * len(index)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: train loss {loss_sum / total:.4f}, train accuracy "
                f"{correct / total:.4f}, test accuracy {model.accuracy(test_x, test_y):.4f}")
    model.eval()
    report = {
        "dataset": dataset,
        "train_split": train_split,
        "test_split": test_split,
        "seed": seed,
        "epochs": epochs,
        "num_train": len(train_x),
        "num_test": len(test_x),
        "test_accuracy": model.accuracy(test_x, test_y),
        "test_accuracy_binarized": model.accuracy(test_binary, test_y),
        "augmentation": f"shift <= {max_shift} px, binarized with probability {binarize_probability}",
    }
    model.metadata = dict(report)
    return model, report


__all__ = ["ReferenceClassifier", "load_reference_classifier", "train_reference_classifier"]
