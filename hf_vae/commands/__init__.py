"""The verbs of the `hf-vae` command line, one module per group; `hf_vae.cli:main` is the entry point.

Each module has `register(subparsers)`, adding its verbs with `set_defaults(func=handler)`; a handler
raises `ValueError` for anything the user must fix, which `main` prints as one `error:` line (exit 2).
Adding a verb is a function and a parser in a module here, and the module in `GROUPS` if it is new.
Heavy imports (torch, datasets) happen inside the handlers, so `hf-vae --help` stays fast.
"""

from __future__ import annotations

from ..demo import command as demo
from . import env, evaluation, hub, images, training

#: The verb groups, in the order `hf-vae --help` lists them (`demo` lives with the app, in `hf_vae/demo/`).
GROUPS = (training, evaluation, images, hub, demo, env)


def register_all(sub) -> None:
    """Add every group's verbs to the `hf-vae` subparsers."""
    for group in GROUPS:
        group.register(sub)
