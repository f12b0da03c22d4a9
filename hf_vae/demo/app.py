"""The demo page of an hf_vae model: `build_demo(MODEL)` -> a `gr.Blocks` whose tabs follow the family.

    build_demo("runs/vae_mnist5k")  (a folder, a Hub repo id, a loaded model or a `DemoSession`)
        Generate           seed, number, temperature (+ class and guidance for a conditional model; a prior
                           over codes decodes through its VQ-VAE)                        api_name "generate"
        Interpolate        two images -> a linear or spherical strip                     "interpolate"
        Latent arithmetic  a + scale * (b - c) on encoded images                         "arithmetic"
        Reconstruct        image -> the model's input, reconstruction, per-pixel error   "reconstruct"
        Score              image -> NLL, bits/dim, percentile among the test split       "score"
        Codes (VQ-VAE)     image -> code grid picture, code histogram, usage             "codes"

Gradio is imported here only (the `demo` extra); `import hf_vae` never imports this module. Every number
and picture comes from `DemoSession` (session.py); this module lays out the page and turns a bad input's
`ValueError` into a `gr.Error`, a message in the page, never a traceback, and the app keeps serving.
Input images arrive as file paths (`type="filepath"`, `image_mode=None`): Gradio then only reads the
header, and `read_image` refuses an oversized one before decoding it.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile

from .session import INTERPOLATIONS, MAX_IMAGES, MAX_STEPS, DemoSession

logger = logging.getLogger(__name__)


def _gradio():
    """Gradio, imported on first use, with its usage analytics off (a demo sends nothing anywhere)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio

    return gradio


def _answer(method):
    """A tab's handler: the session's method (its signature names the endpoint's parameters), with sliders'
    whole numbers (16.0) passed as ints and a bad input's message shown in the page (a `gr.Error`)."""
    gr = _gradio()

    @functools.wraps(method)
    def handler(*args):
        args = [int(a) if isinstance(a, float) and a.is_integer() else a for a in args]
        try:
            return method(*args)
        except ValueError as error:
            raise gr.Error(" ".join(str(error).split()), print_exception=False) from None
        except Exception as error:  # a bug, not an input: logged with its traceback, a one-line message in the page
            logger.exception("demo handler %s failed", method.__name__)
            raise gr.Error(f"{type(error).__name__}: {' '.join(str(error).split())}", print_exception=False) from None

    return handler


def _path_of_any_file(preprocess):
    """An image input's `preprocess` that hands over the uploaded file's path even when Gradio cannot open it
    as an image (a text file, a truncated PNG): `read_image` then names the problem in the page, where
    Gradio's own error would be a bare "Error"."""

    @functools.wraps(preprocess)
    def wrapped(payload):
        try:
            return preprocess(payload)
        except Exception:
            return None if payload is None else payload.path

    return wrapped


def build_demo(model, *, vqvae=None, max_pixels: int | None = None, title: str | None = None):
    """The Gradio app of `model`: a folder or Hub repo id (loaded with `hf_vae.hub.load_model`, with the
    training metadata beside it), a loaded hf_vae model, or a `DemoSession`.

    Args:
        vqvae: the VQ-VAE of a prior over codes (a model or repo id; default: the one its config records).
        max_pixels: the largest input image accepted (default `session.MAX_PIXELS`).
        title: the page's heading (default: the model's name).

    Returns a `gr.Blocks` (its `DemoSession` as `.hf_vae_session`); `launch()` it, or call its endpoints
    with `gradio_client` (api names above).
    """
    gr = _gradio()
    options = {} if max_pixels is None else {"max_pixels": max_pixels}
    if isinstance(model, DemoSession):
        session = model
    elif isinstance(model, (str, os.PathLike)):
        session = DemoSession.load(model, vqvae=vqvae, **options)
    else:
        session = DemoSession(model, vqvae=vqvae, **options)
    name = title or (str(model) if isinstance(model, (str, os.PathLike)) else type(session.model).__name__)
    page = _Page(gr, session)
    with gr.Blocks(title=f"hf_vae demo: {name}") as demo:
        gr.Markdown(f"# {name}\n{page.summary()}")
        page.tabs()
    demo.hf_vae_session = session  # what `hf-vae demo` warms up (the score percentiles' reference) before serving
    return demo


class _Page:
    """The tabs of one session's page: each lays out its inputs and wires its button to a session method."""

    def __init__(self, gr, session: DemoSession):
        self.gr, self.session = gr, session
        self.capabilities = session.capabilities
        self.classes = session.class_names
        self.examples = self._example_files()

    def summary(self) -> str:
        model = self.session.model
        kind = type(model).__name__
        if self.session.vqvae is not None:
            kind += f", decoding through its VQ-VAE ({type(self.session.vqvae).__name__})"
        classes = f"; classes: {', '.join(self.classes[:20])}" if self.classes else ""
        return f"{kind} (`{model.config.model_type}`){classes}. {self.session.reference_note()}"

    def tabs(self) -> None:
        gr, caps = self.gr, self.capabilities
        with gr.Tabs():
            for capability, tab in (("sample", self.generate), ("interpolate", self.interpolate),
                                    ("arithmetic", self.arithmetic), ("reconstruct", self.reconstruct),
                                    ("score", self.score), ("codes", self.codes)):
                if capability in caps:
                    tab()

    # -- components ------------------------------------------------------------------------------------

    def _example_files(self) -> list[tuple[str, str]]:
        """The session's test images written as PNGs (what `gr.Examples` shows), with their class names."""
        examples = self.session.examples()
        if not examples:
            return []
        folder = tempfile.mkdtemp(prefix="hf_vae_demo_examples_")
        files = []
        for index, (image, label) in enumerate(examples):
            path = os.path.join(folder, f"test_{index}.png")
            image.save(path)
            files.append((path, label))
        return files

    def _image(self, label: str, elem_id: str):
        # filepath + image_mode=None: Gradio reads the header only; `read_image` checks the size first.
        image = self.gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], label=label,
                              elem_id=elem_id, height=200)
        image.preprocess = _path_of_any_file(image.preprocess)
        return image

    def _class(self, label: str = "class", elem_id: str | None = None):
        """A class picker, hidden for an unconditional model (its endpoints still take the value, empty)."""
        return self.gr.Dropdown(choices=self.classes, value=None, allow_custom_value=True, label=label,
                                visible=bool(self.classes), elem_id=elem_id)

    def _output(self, label: str, elem_id: str):
        return self.gr.Image(type="pil", format="png", label=label, elem_id=elem_id, interactive=False)

    def _examples(self, inputs, per_row: int) -> None:
        """Rows of consecutive test images (with their classes for a conditional model) to pick as inputs."""
        if not self.examples:
            return
        images, classes = inputs[:per_row], inputs[per_row:]
        rows = []
        for start in range(0, len(self.examples) - per_row + 1, per_row):
            picked = self.examples[start:start + per_row]
            rows.append([path for path, _ in picked] + [label for _, label in picked][:len(classes)])
        self.gr.Examples(rows, images + classes, label="test images from the model's dataset")

    # -- tabs ------------------------------------------------------------------------------------------

    def generate(self) -> None:
        gr = self.gr
        with gr.Tab("Generate", id="generate"):
            if self.session.vqvae is not None:
                gr.Markdown("Two-stage: the prior samples code grids, which its VQ-VAE decodes into images.")
            elif type(self.session.model).input_kind == "tokens":
                size = self.session.model.config.grid_size
                gr.Markdown(f"A prior over pixels draws its {size}x{size} pixels one after another ({size * size} "
                            "steps, each computing only what the new pixel changes): the slowest tab.")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, label="seed")
                count = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="number of images")
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature")
            with gr.Row(visible=bool(self.classes)):
                class_name = self._class()
                guidance = gr.Slider(0.0, 5.0, value=1.0, step=0.1, label="guidance scale (1 = none)")
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
            output = self._output("samples", "generate-output")
        button.click(_answer(self.session.generate),
                     [seed, count, temperature, class_name, guidance], output, api_name="generate")

    def interpolate(self) -> None:
        gr = self.gr
        with gr.Tab("Interpolate", id="interpolate"):
            with gr.Row():
                image_a, image_b = self._image("image A", "interpolate-a"), self._image("image B", "interpolate-b")
            with gr.Row():
                class_a, class_b = self._class("class of A"), self._class("class of B")
                steps = gr.Slider(2, MAX_STEPS, value=8, step=1, label="steps")
                method = gr.Radio(list(INTERPOLATIONS), value="linear", label="path")
            self._examples([image_a, image_b, class_a, class_b] if self.classes else [image_a, image_b], 2)
            button = gr.Button("Interpolate", variant="primary", elem_id="interpolate-button")
            output = self._output("A -> B", "interpolate-output")
        button.click(_answer(self.session.interpolate),
                     [image_a, image_b, steps, method, class_a, class_b], output, api_name="interpolate")

    def arithmetic(self) -> None:
        gr = self.gr
        with gr.Tab("Latent arithmetic", id="arithmetic"):
            gr.Markdown("Decodes z(a) + scale * (z(b) - z(c)): what b has that c lacks, added to a.")
            with gr.Row():
                images = [self._image(label, f"arithmetic-{label}") for label in ("a", "b", "c")]
            with gr.Row():
                scale = gr.Slider(-2.0, 3.0, value=1.0, step=0.1, label="scale")
                class_name = self._class("class (all three)")
            self._examples(images, 3)
            button = gr.Button("Compute", variant="primary", elem_id="arithmetic-button")
            output = self._output("a, b, c, a + scale (b - c)", "arithmetic-output")
        button.click(_answer(self.session.arithmetic), [*images, scale, class_name], output, api_name="arithmetic")

    def reconstruct(self) -> None:
        gr = self.gr
        with gr.Tab("Reconstruct", id="reconstruct"):
            with gr.Row():
                image = self._image("image", "reconstruct-input")
                class_name = self._class()
            self._examples([image, class_name] if self.classes else [image], 1)
            button = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct-button")
            with gr.Row():
                outputs = [self._output("the model's input", "reconstruct-seen"),
                           self._output("reconstruction", "reconstruct-output"),
                           self._output("per-pixel error (black 0, yellow 1)", "reconstruct-error")]
        button.click(_answer(self.session.reconstruct), [image, class_name], outputs, api_name="reconstruct")

    def score(self) -> None:
        gr = self.gr
        with gr.Tab("Score", id="score"):
            gr.Markdown("How unusual an image is to the model: its negative log-likelihood (higher = more "
                        f"unusual), as an anomaly detector. {self.session.reference_note()}")
            with gr.Row():
                image = self._image("image", "score-input")
                class_name = self._class("class (optional: -log p(x|class))")
            self._examples([image], 1)
            button = gr.Button("Score", variant="primary", elem_id="score-button")
            output = gr.JSON(label="score", elem_id="score-output")
        button.click(_answer(self.session.score), [image, class_name], output, api_name="score")

    def codes(self) -> None:
        gr = self.gr
        with gr.Tab("Codes", id="codes"):
            image = self._image("image", "codes-input")
            self._examples([image], 1)
            button = gr.Button("Show codes", variant="primary", elem_id="codes-button")
            with gr.Row():
                outputs = [self._output("code grid (one colour per code)", "codes-grid"),
                           self._output("codes used by this image (histogram over the codebook)", "codes-histogram")]
            outputs.append(gr.JSON(label="codebook usage", elem_id="codes-usage"))
        button.click(_answer(self.session.codes), [image], outputs, api_name="codes")
