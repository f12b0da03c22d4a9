"""`hf-vae card`, `hf-vae push` and `hf-vae push-dataset`: the model card and the Hub round trip."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import check_output


def _card(args) -> None:
    from ..cards import PLACEHOLDER_REPO_ID, render_card

    card = render_card(args.run_dir, args.repo_id, dataset_id=args.dataset_id)
    if args.repo_id is None:  # on stderr, so `--output -` still prints the card alone
        print(f"hf-vae card: no --repo-id: the usage snippets load the placeholder {PLACEHOLDER_REPO_ID!r}; "
              "pass --repo-id USER/NAME (hf-vae push fills it in)", file=sys.stderr)
    if args.output == "-":
        print(card)
    else:
        # Default beside the run's files, never over the README of the current folder.
        output = args.output or str(Path(args.run_dir) / "README.md")
        check_output(output)
        card.save(output)
        print(f"wrote {output}")


def _push(args) -> None:
    from ..hub import HubPushError, push_run

    try:
        commit = push_run(args.run_dir, args.repo_id, revision=args.revision, private=args.private,
                          token=args.token, commit_message=args.commit_message, dataset_id=args.dataset_id)
    except HubPushError as error:
        print(f"hf-vae push: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"pushed {args.run_dir} to {commit.commit_url} (commit {commit.oid})")


def _push_dataset(args) -> None:
    from ..hub import HubPushError, push_embedded_dataset

    try:
        commit = push_embedded_dataset(args.name, args.repo_id, revision=args.revision, private=args.private,
                                       token=args.token, commit_message=args.commit_message)
    except HubPushError as error:
        print(f"hf-vae push-dataset: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"pushed dataset {args.name} to {commit.commit_url} (commit {commit.oid})")


def register(sub) -> None:
    p = sub.add_parser("card", help="render the model card (README.md) of a run directory")
    p.add_argument("run_dir")
    p.add_argument("--repo-id", "--repo_id", default=None, help="the Hub repo the card is for (usage snippets; default: a placeholder)")
    p.add_argument("--dataset-id", "--dataset_id", default=None, help="Hub dataset id for the card metadata")
    p.add_argument("--output", default=None, help="file to write (default RUN_DIR/README.md), or - for stdout")
    p.set_defaults(func=_card)

    p = sub.add_parser("push", help="push a run directory (model, card, metrics, images) to the Hub in one commit")
    p.add_argument("run_dir")
    p.add_argument("repo_id", help="model repo, e.g. user/vae-mnist5k (created if missing)")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--commit-message", "--commit_message", default=None)
    p.add_argument("--dataset-id", "--dataset_id", default=None, help="Hub dataset id for the card metadata")
    p.add_argument("--token", default=None, help="Hub token (default: saved login or $HF_TOKEN)")
    p.set_defaults(func=_push)

    p = sub.add_parser("push-dataset", help="push an embedded dataset (mnist5k, digits) as a Hub dataset repo")
    p.add_argument("name", help="mnist5k or digits")
    p.add_argument("repo_id", help="dataset repo, e.g. user/mnist5k (created if missing)")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--commit-message", "--commit_message", default=None)
    p.add_argument("--token", default=None, help="Hub token (default: saved login or $HF_TOKEN)")
    p.set_defaults(func=_push_dataset)
