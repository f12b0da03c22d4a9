"""The demo app (hf_vae/demo): every endpoint through `gradio_client` against an app launched here on a
port the OS picks, bad inputs answered in the page while the app keeps serving, the `hf-vae demo`
command, and the Space written and pushed to the local Hub (tests/hub_server.py serves Space repos).
Tiny random-weight models on 8x8 images; the score percentiles come from sklearn `digits` (embedded)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

pytest.importorskip("gradio", reason="the demo needs the `demo` extra (gradio)")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from hf_vae import CVAEConfig, CVAEModel, TransformerPriorConfig, TransformerPriorModel  # noqa: E402
from hf_vae import VAEConfig, VAEModel, VQVAEConfig, VQVAEModel, set_label_names  # noqa: E402
from hf_vae.demo import push_space, write_space  # noqa: E402
from hf_vae.demo.app import build_demo  # noqa: E402
from hf_vae.demo.session import SCORE_SAMPLES, DemoSession, read_image  # noqa: E402
from hf_vae.generation import generate_images  # noqa: E402
from hf_vae.images import image_grid  # noqa: E402

from .hub_server import USER  # noqa: E402

IMAGE = dict(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0)
# What a training run records in metrics.json, as far as the demo reads it.
DIGITS = {"recipe": {"data": {"dataset": "digits", "test_split": "test", "eval_binarize": "static", "binarize_seed": 0}}}


def build(cls, config_cls, **kwargs):
    torch.manual_seed(0)
    return cls(config_cls(**kwargs)).eval()


@pytest.fixture(scope="module")
def models():
    cvae = build(CVAEModel, CVAEConfig, latent_dim=4, num_classes=3, label_embedding_dim=4, label_dropout=0.2, **IMAGE)
    set_label_names(cvae.config, ["zero", "one", "two"])
    vqvae = build(VQVAEModel, VQVAEConfig, codebook_size=8, embedding_dim=4, **IMAGE)
    prior = build(TransformerPriorModel, TransformerPriorConfig, vocab_size=8, grid_size=4, num_layers=1, num_heads=2,
                  hidden_size=8, token_source="vqvae_codes")
    return {"vae": build(VAEModel, VAEConfig, latent_dim=4, **IMAGE), "cvae": cvae, "vqvae": vqvae, "prior": prior}


@contextmanager
def serve(demo):
    """Launch `demo` on a free port the OS picks; yield a `gradio_client.Client` of it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def png(tmp_path, name: str, array: np.ndarray) -> str:
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return str(path)


def digit(seed: int) -> np.ndarray:
    """An 8x8 grey uint8 image."""
    return (np.random.default_rng(seed).random((8, 8)) * 255).astype(np.uint8)


def opened(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_tabs_follow_the_family(models):
    vae, vqvae = DemoSession(models["vae"]), DemoSession(models["vqvae"])
    prior = DemoSession(models["prior"], vqvae=models["vqvae"])
    assert {"sample", "interpolate", "arithmetic", "reconstruct", "score"} <= vae.capabilities
    assert "codes" not in vae.capabilities
    assert {"reconstruct", "score", "codes"} <= vqvae.capabilities and "sample" not in vqvae.capabilities
    assert "sample" in prior.capabilities and "interpolate" not in prior.capabilities
    assert DemoSession(models["cvae"]).class_names == ["zero", "one", "two"] and vae.class_names == []
    # Without a recorded dataset the page says the percentile is unknown, and the score has none.
    assert "unknown" in vae.reference_note()


def test_vae_endpoints_through_gradio_client(models, tmp_path):
    """Each endpoint answers what the model method it wraps gives (the app adds no maths of its own)."""
    model = models["vae"]
    session = DemoSession(model, metadata=DIGITS)
    a, b, c = (png(tmp_path, f"{n}.png", digit(i)) for i, n in enumerate("abc"))
    with serve(build_demo(session)) as client:
        names = set(client.view_api(return_format="dict")["named_endpoints"])
        assert names == {"/generate", "/interpolate", "/arithmetic", "/reconstruct", "/score"}

        grid = opened(client.predict(3, 4, 0.8, None, 1.0, api_name="/generate"))
        expected = model.sample(4, generator=torch.Generator().manual_seed(3), temperature=0.8)
        assert np.array_equal(grid, np.asarray(image_grid(expected, nrow=4, scale=session.scale)))

        strip = opened(client.predict(handle_file(a), handle_file(b), 5, "spherical", None, None, api_name="/interpolate"))
        assert np.array_equal(strip, np.asarray(session.interpolate(a, b, 5, "spherical")))

        row = opened(client.predict(handle_file(a), handle_file(b), handle_file(c), 1.5, None, api_name="/arithmetic"))
        assert np.array_equal(row, np.asarray(session.arithmetic(a, b, c, 1.5)))

        seen, recon, error = client.predict(handle_file(a), None, api_name="/reconstruct")
        pixel_values = session.pixels(a)
        reconstruction = model.reconstruct(pixel_values)
        assert np.array_equal(opened(recon), np.asarray(session.reconstruct(a)[1]))
        assert opened(error).shape[:2] == opened(seen).shape[:2] == (8 * session.scale, 8 * session.scale)
        assert (pixel_values - reconstruction).abs().max() > 0  # a random model: the error map is not all black
        assert opened(error).max() > 0

        scored = client.predict(handle_file(a), None, api_name="/score")
        nll = -model.log_likelihood(pixel_values, num_samples=SCORE_SAMPLES, generator=torch.Generator().manual_seed(0))
        assert scored["nll_nats"] == pytest.approx(float(nll[0]), rel=1e-6)
        assert scored["bits_per_dim"] == pytest.approx(float(nll[0]) / (64 * np.log(2)), rel=1e-6)
        reference = session.reference_scores()
        assert len(reference) == 200  # the first 200 digits test images, scored once
        assert scored["percentile"] == pytest.approx(100 * float((reference < nll[0]).double().mean()), abs=0.6)
        assert "'digits' 'test' split" in scored["reference"]


def test_cvae_classes_by_name_and_guidance(models, tmp_path):
    model = models["cvae"]
    session = DemoSession(model)
    a = png(tmp_path, "a.png", digit(0))
    with serve(build_demo(session)) as client:
        grid = opened(client.predict(1, 3, 1.0, "two", 2.0, api_name="/generate"))
        images = model.sample(3, generator=torch.Generator().manual_seed(1), labels="two", guidance_scale=2.0)
        assert np.array_equal(grid, np.asarray(image_grid(images, nrow=3, scale=session.scale)))
        strip = opened(client.predict(handle_file(a), handle_file(a), 3, "linear", "zero", "one", api_name="/interpolate"))
        assert np.array_equal(strip, np.asarray(session.interpolate(a, a, 3, "linear", "zero", "one")))
        conditional = client.predict(handle_file(a), "one", api_name="/score")
        unconditional = client.predict(handle_file(a), None, api_name="/score")
        assert conditional["nll_nats"] != unconditional["nll_nats"]  # -log p(x|y) vs -log p(x)
        assert conditional["percentile"] is None and "unknown" in conditional["reference"]
        with pytest.raises(AppError, match="class names of the model"):
            client.predict(1, 3, 1.0, "seven", 1.0, api_name="/generate")  # an unknown class name
        # Still serving after the error.
        assert opened(client.predict(0, 1, 1.0, "zero", 1.0, api_name="/generate")).size > 0


def test_vqvae_codes_and_two_stage_generation(models, tmp_path):
    vqvae, prior = models["vqvae"], models["prior"]
    a = png(tmp_path, "a.png", digit(0))
    session = DemoSession(vqvae)
    with serve(build_demo(session)) as client:
        assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/reconstruct", "/score", "/codes"}
        grid, histogram, usage = client.predict(handle_file(a), api_name="/codes")
        indices = vqvae.encode_to_indices(session.pixels(a))[0]
        assert usage["codes"] == indices.tolist()
        assert opened(grid).shape[:2] == (4 * session.scale * 2, 4 * session.scale * 2)
        assert opened(histogram).min() < 255  # at least one bar drawn
    session = DemoSession(prior, vqvae=vqvae)
    with serve(build_demo(session)) as client:
        assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/generate", "/score"}
        grid = opened(client.predict(2, 2, 1.0, None, 1.0, api_name="/generate"))
        images = generate_images(prior, 2, vqvae=vqvae, generator=torch.Generator().manual_seed(2), progress=False)
        assert np.array_equal(grid, np.asarray(image_grid(images, nrow=2, scale=session.scale)))
        scored = client.predict(handle_file(a), None, api_name="/score")
        assert scored["bits_per_dim"] is None and scored["nll_nats"] > 0  # a code grid has no pixels to count


def test_bad_inputs_get_a_message_and_the_app_keeps_serving(models, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    huge = tmp_path / "huge.png"
    Image.new("L", (10_000, 10_000)).save(huge)  # 100 million pixels, a few hundred kB compressed
    good = png(tmp_path, "good.png", digit(0))
    with serve(build_demo(DemoSession(models["vae"]))) as client:
        for path, message in ((empty, "empty upload"), (text, "must be an image file"),
                              (huge, "at most 50,000,000 pixels, got 10000x10000")):
            with pytest.raises(AppError, match=message):
                client.predict(handle_file(str(path)), None, api_name="/score")
        with pytest.raises(AppError, match="must be an uploaded image, got nothing"):
            client.predict(None, None, api_name="/reconstruct")
        with pytest.raises(AppError, match="greater than maximum value 64"):  # Gradio's slider check
            client.predict(0, 1000, 1.0, None, 1.0, api_name="/generate")
        with pytest.raises(AppError, match="must be None for VAEModel"):
            client.predict(0, 2, 1.0, "cat", 1.0, api_name="/generate")  # a class for an unconditional model
        assert client.predict(handle_file(good), None, api_name="/score")["nll_nats"] > 0  # still serving
        # A phone photo (RGB JPEG, 4:3, megapixels) goes through the image processor like any image.
        photo = tmp_path / "photo.jpg"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(photo)
        seen = opened(client.predict(handle_file(str(photo)), None, api_name="/reconstruct")[0])
        assert seen.shape[:2] == (8 * 14, 8 * 14)  # the model's 8x8 input, shown 14x


def test_read_image_refuses_before_decoding(tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("L", (3000, 3000)).save(huge)
    with pytest.raises(ValueError, match="at most 1,000,000 pixels, got 3000x3000"):
        read_image(str(huge), max_pixels=1_000_000)
    assert read_image(str(huge), max_pixels=10_000_000).size == (3000, 3000)


def test_session_checks_its_arguments(models):
    session = DemoSession(models["vae"])
    with pytest.raises(ValueError, match=r"`num_images` must be an int in \[1, 64\], got 1000"):
        session.generate(0, 1000)
    with pytest.raises(ValueError, match="`seed` must be an int >= 0, got -1"):
        session.generate(-1, 2)
    with pytest.raises(ValueError, match="`method` must be one of"):
        session.interpolate(None, None, 4, "cubic")


def test_demo_command_passes_port_and_host_only_when_given(monkeypatch, models):
    """Without --port/--host, launch() gets neither, so GRADIO_SERVER_PORT / GRADIO_SERVER_NAME apply."""
    import hf_vae.demo.app as app
    from hf_vae.cli import build_parser

    launched = []

    class FakeDemo:
        hf_vae_session = DemoSession(models["vae"])

        def launch(self, **kwargs):
            launched.append(kwargs)

    monkeypatch.setattr(app, "build_demo", lambda model: FakeDemo())
    for argv, expected in ((["demo", "some/model"], {}),
                           (["demo", "some/model", "--port", "7999", "--host", "0.0.0.0"],
                            {"server_port": 7999, "server_name": "0.0.0.0"})):
        args = build_parser().parse_args(argv)
        args.func(args)
        assert launched.pop() == expected


def test_space_is_written_and_pushed_to_the_local_hub(models, tmp_path, hub_server):
    """The Space's app.py loads the model by repo id: run here against the local Hub, it builds the page
    of the pushed model, with the dataset its metrics.json records."""
    model_id, space_id = f"{USER}/demo-vae", f"{USER}/demo-vae-space"
    folder = tmp_path / "model"
    models["vae"].save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps(DIGITS))
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(model_id, exist_ok=True)
    api.upload_folder(repo_id=model_id, folder_path=str(folder))

    written = write_space(model_id, tmp_path / "space")
    assert sorted(p.name for p in written) == ["README.md", "app.py", "requirements.txt"]
    with pytest.raises(ValueError, match="`model_repo_id` must be a Hub repo id"):
        write_space("not a repo id!", tmp_path / "bad")

    commit = push_space(model_id, space_id)
    assert commit.oid
    files = hub_server.files(space_id, repo_type="space")
    metadata = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py" and metadata["models"] == [model_id]
    assert "gradio==" in files["requirements.txt"].decode() and "hf_vae" in files["requirements.txt"].decode()
    namespace = {"__name__": "space_app"}  # not __main__: the page is built, not launched
    exec(compile(files["app.py"].decode(), "app.py", "exec"), namespace)
    session = namespace["demo"].hf_vae_session
    assert torch.equal(session.model.encoder.convs[0].weight, models["vae"].encoder.convs[0].weight)
    assert session.dataset["dataset"] == "digits"  # read from the model repo's metrics.json

    # The same through the command line.
    from hf_vae.cli import main

    main(["demo", model_id, "--space", f"{USER}/demo-vae-space-2"])
    assert "app.py" in hub_server.files(f"{USER}/demo-vae-space-2", repo_type="space")


def test_gradio_is_imported_by_the_demo_only():
    code = ("import sys, hf_vae, hf_vae.cli, hf_vae.demo; hf_vae.cli.build_parser(); "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
