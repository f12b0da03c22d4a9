"""`hf-vae demo`: serve the demo page of a model, or push it as a Hugging Face Space.

    hf-vae demo runs/vae_mnist5k [--port 7860] [--host 0.0.0.0]
    hf-vae demo user/vae-mnist5k --space user/vae-mnist5k-demo     (writes and pushes the Space, then exits)

Without `--port` / `--host`, Gradio's own `GRADIO_SERVER_PORT` / `GRADIO_SERVER_NAME` apply, as in any
Gradio app (they are simply not passed to `launch`).
"""

from __future__ import annotations

import sys
import threading


def register(subparsers) -> None:
    """Add the `demo` command to the `hf-vae` subparsers."""
    p = subparsers.add_parser("demo", help="serve a Gradio demo of a model (or push it as a Space with --space)")
    p.add_argument("model", help="model folder, run directory or Hub repo id")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else Gradio's 7860+)")
    p.add_argument("--host", default=None, help="address to serve on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    p.add_argument("--space", default=None, metavar="SPACE_ID",
                   help="push a Gradio Space (app.py, requirements.txt, README) that loads MODEL, a Hub repo id")
    p.add_argument("--requirement", default=None, help="with --space: the pip line that installs hf_vae on the Space")
    p.add_argument("--private", action="store_true", help="with --space: create the Space private")
    p.add_argument("--token", default=None, help="with --space: Hub token (default: saved login or $HF_TOKEN)")
    p.set_defaults(func=run)


def run(args) -> None:
    """Push the Space (`--space`), or build the page and serve it until interrupted."""
    if args.space is not None:
        _push(args)
        return
    from ..validation import check_int
    from .app import build_demo

    if args.port is not None:
        check_int("--port", args.port, minimum=1, maximum=65535)
    demo = build_demo(args.model)
    session = demo.hf_vae_session
    if session.dataset is not None:
        # The score percentiles' reference scores, computed while the page loads rather than on the first Score.
        threading.Thread(target=session.reference_scores, name="hf-vae-demo-reference", daemon=True).start()
    where = {key: value for key, value in (("server_port", args.port), ("server_name", args.host)) if value is not None}
    demo.launch(**where)


def _push(args) -> None:
    from ..hub import HubPushError
    from .space import DEFAULT_REQUIREMENT, push_space

    try:
        commit = push_space(args.model, args.space, token=args.token, private=args.private,
                            requirement=args.requirement or DEFAULT_REQUIREMENT)
    except HubPushError as error:
        print(f"hf-vae demo: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"pushed the demo Space {args.space} ({commit.commit_url})")
