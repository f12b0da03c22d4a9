"""Latent arithmetic (VAE / CVAE) and the anomaly-detection report."""

import numpy as np
import pytest
import torch

from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel
from hf_vae.anomaly import anomaly_detection

TINY = dict(image_size=8, num_channels=1, hidden_channels=[8, 16], latent_dim=4, num_res_blocks=1)


def _images(n, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_latent_arithmetic_decodes_a_plus_b_minus_c():
    torch.manual_seed(0)
    model = VAEModel(VAEConfig(**TINY)).eval()
    a, b, c = _images(3, 1), _images(3, 2), _images(1, 3)  # c broadcasts against the batch of 3
    out = model.latent_arithmetic(a, b, c, scale=0.5)
    mean = lambda x: model.encode(x).latent_dist.mean  # noqa: E731
    expected = model.decode(mean(a) + 0.5 * (mean(b) - mean(c).expand(3, -1))).sample
    assert out.shape == (3, 1, 8, 8)
    torch.testing.assert_close(out, expected)
    # b == c: nothing is added, so the result is a's reconstruction.
    torch.testing.assert_close(model.latent_arithmetic(a, b, b), model.reconstruct(a))


def test_latent_arithmetic_checks_its_arguments():
    model = VAEModel(VAEConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="`image_b` must hold 1 or 3 images"):
        model.latent_arithmetic(_images(3), _images(2), _images(1))
    with pytest.raises(ValueError, match="`scale`"):
        model.latent_arithmetic(_images(1), _images(1), _images(1), scale=float("nan"))
    with pytest.raises(ValueError, match="labels"):
        model.latent_arithmetic(_images(1), _images(1), _images(1), labels=torch.tensor([0]))


def test_latent_arithmetic_cvae_conditions_on_labels():
    torch.manual_seed(0)
    model = CVAEModel(CVAEConfig(**TINY, num_classes=3)).eval()
    a, b = _images(2, 1), _images(2, 2)
    labels = torch.tensor([0, 2])
    torch.testing.assert_close(model.latent_arithmetic(a, b, b, labels), model.reconstruct(a, labels))
    with pytest.raises(ValueError, match="labels"):
        model.latent_arithmetic(a, b, b)


def test_anomaly_detection_auroc_and_threshold():
    reference = [1.0, 2.0, 3.0, 4.0]
    outliers = torch.tensor([3.5, 5.0, 6.0])
    report = anomaly_detection(reference, outliers)
    # 12 (reference, outlier) pairs; only (4.0, 3.5) is ordered wrongly.
    assert report.auroc == pytest.approx(11 / 12)
    # Youden's J: flagging >= 5.0 catches 2/3 outliers and no reference image (J = 0.667); >= 3.5 catches
    # 3/3 and 1/4 reference images (J = 0.75), so 3.5 wins.
    assert report.threshold == 3.5
    assert report.true_positive_rate == 1.0 and report.false_positive_rate == 0.25
    assert (report.num_reference, report.num_outliers) == (4, 3)
    perfect = anomaly_detection(np.arange(5.0), np.arange(10.0, 12.0))
    assert perfect.auroc == 1.0 and perfect.true_positive_rate == 1.0 and perfect.false_positive_rate == 0.0
    assert set(report.to_dict()) == {"auroc", "threshold", "true_positive_rate", "false_positive_rate",
                                     "num_reference", "num_outliers"}


@pytest.mark.parametrize("bad, match", [([], "non-empty"), ([[1.0]], "1-D"), ([1.0, float("nan")], "finite")])
def test_anomaly_detection_rejects_bad_scores(bad, match):
    with pytest.raises(ValueError, match=match):
        anomaly_detection([1.0, 2.0], bad)
