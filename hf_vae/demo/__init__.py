"""A demo app for any hf_vae model: a Gradio page locally (`hf-vae demo MODEL`) or as a Hugging Face Space.

- `session`: `DemoSession`, what the page computes (no Gradio): the model, its image processor, the
  training run's test split for score percentiles, and one method per tab.
- `app`: `build_demo(MODEL)`, the `gr.Blocks` page whose tabs follow the family.
- `space`: `write_space` / `push_space`, a Space (`app.py`, `requirements.txt`, README metadata) that
  loads the model by repo id.
- `command`: the `hf-vae demo` command line (`register`, `run`; a group of `hf_vae.commands`).

Gradio is the `demo` extra (`pip install hf_vae[demo]`): it is imported by `build_demo`, never by
`import hf_vae` nor by `import hf_vae.demo`.
"""

from .space import push_space, write_space


def build_demo(model, **kwargs):
    """`hf_vae.demo.app.build_demo` (imports Gradio): the demo page of a model folder, repo id or model."""
    from .app import build_demo as build

    return build(model, **kwargs)


__all__ = ["build_demo", "push_space", "write_space"]
