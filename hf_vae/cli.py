"""`hf-vae` command line: train a recipe, evaluate or sample a saved model.

    hf-vae train training/configs/vae_mnist5k.yaml [--resume] [--set training.max_steps=200]
    hf-vae evaluate RUN_DIR --dataset mnist5k --split test --binarize static --num-importance-samples 1000
    hf-vae sample RUN_DIR --num-samples 64 --output samples.png [--labels 3 cat]
    hf-vae card RUN_DIR [--repo-id USER/NAME] [--output README.md]
    hf-vae push RUN_DIR USER/NAME [--revision BRANCH] [--private] [--commit-message MSG]
    hf-vae push-dataset mnist5k USER/NAME [--revision BRANCH] [--private]
    hf-vae demo RUN_DIR_OR_REPO_ID [--port 7860] [--host 0.0.0.0] [--space USER/SPACE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def _check_output(path: str | None, name: str = "--output") -> None:
    """An output file's folder must exist: checked before the (slow) work, not when writing the result."""
    if path is not None and path != "-" and not Path(path).expanduser().resolve().parent.is_dir():
        raise ValueError(f"`{name}` must be a file in an existing folder, got {path!r} (no such folder "
                         f"{str(Path(path).parent)!r})")


def _check_recipe_file(path: str) -> None:
    """The recipe must be a YAML mapping: invalid YAML or a list ends with one error line, not a traceback."""
    import yaml

    if not Path(path).is_file():
        return  # Recipe.from_yaml names the missing file
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"`recipe` must be valid YAML, got {path!r}: {' '.join(str(error).split())}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"`recipe` must be a YAML mapping of sections (model, data, training, ...), got a "
                         f"{type(raw).__name__} in {path!r}")


def _train(args) -> None:
    from .hub import validate_repo_id
    from .training import Recipe, train

    _check_recipe_file(args.recipe)
    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"training.output_dir={args.output_dir}")
    if args.push_to_hub:
        overrides.append("hub.push_to_hub=true")
    if args.hub_model_id:
        validate_repo_id(args.hub_model_id, "hub_model_id")  # before training, not after it
        overrides.append(f"hub.hub_model_id={args.hub_model_id}")
    recipe = Recipe.from_yaml(args.recipe, overrides)
    if recipe.hub.hub_model_id is not None:
        validate_repo_id(recipe.hub.hub_model_id, "hub.hub_model_id")
    run_dir = train(recipe, resume=args.resume)
    print(f"saved to {run_dir}")


def _evaluate(args) -> None:
    import torch

    from . import data
    from .evaluation import evaluate
    from .hub import load_model

    _check_output(args.output)
    model = load_model(args.model)  # strict, safetensors only; a mistyped path fails at once
    config = model.config
    # An image model reads images of its own size and channels; a pixel prior reads the dataset's own images.
    images = type(model).input_kind == "images"
    view = data.load_split(args.dataset, args.split, binarize=args.binarize, seed=args.seed, streaming=args.streaming,
                           revision=args.revision, config_name=args.config_name,
                           image_size=config.image_size if images else None, num_channels=config.num_channels if images else None)
    torch.manual_seed(args.seed)
    metrics = evaluate(model, view, batch_size=args.batch_size, num_importance_samples=args.num_importance_samples,
                       seed=args.seed, max_examples=args.max_examples)
    for metric in metrics.values():
        if not isinstance(metric.value, list):
            print(metric)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({name: m.to_dict() for name, m in metrics.items()}, f, indent=2)


def _cli_labels(tokens: list[str], label_names: list[str] | None) -> list[int | str]:
    """`--labels` words -> class ids and class names: a word that is one of the model's class names
    (`label_names`) is that class, so MNIST's "3" is its class named "3"; otherwise a word splits at
    commas ("0,1,2") and an integer part is a class id. Anything else stays a name, for the model to
    report as unknown with the names it knows."""
    names = set(label_names or ())
    values: list[int | str] = []
    for token in tokens:
        parts = [token] if token in names else [part.strip() for part in token.split(",")]
        values += [int(part) if part not in names and re.fullmatch(r"[+-]?\d+", part) else part for part in parts]
    return values


def _sample(args) -> None:
    import torch

    from .hub import load_model
    from .images import image_grid
    from .pipelines.pipeline_utils import sample_images

    _check_output(args.output)
    model = load_model(args.model).eval()
    kwargs = {}
    if args.labels:
        if not model.is_conditional:
            raise ValueError(f"`--labels` must be omitted for {type(model).__name__} (an unconditional model), "
                             f"got {' '.join(args.labels)!r}")
        values = _cli_labels(args.labels, model.config.label_names)
        ids = model.class_ids(values, len(values), name="--labels")
        # Consecutive blocks, one per label, as even as the count allows: --labels 3 cat with 64 samples
        # draws 32 of each; 3 labels with 4 samples draw 2, 1, 1.
        count = max(args.num_samples, 1)  # a bad --num-samples is sample_images' to report
        kwargs["labels"] = ids[torch.arange(count) * len(ids) // count]
    generator = torch.Generator().manual_seed(args.seed)
    # sample_images checks the capability before drawing (a VQ-VAE, which has no prior, raises a ValueError).
    # A prior's token grids become images (pixels, or VQ-VAE codes decoded); an image model samples images.
    images = sample_images(model, args.num_samples, generator=generator, **kwargs)
    image_grid(images, scale=2).save(args.output)
    print(f"wrote {args.output}")


def _card(args) -> None:
    from .cards import PLACEHOLDER_REPO_ID, render_card

    card = render_card(args.run_dir, args.repo_id, dataset_id=args.dataset_id)
    if args.repo_id is None:  # on stderr, so `--output -` still prints the card alone
        print(f"hf-vae card: no --repo-id: the usage snippets load the placeholder {PLACEHOLDER_REPO_ID!r}; "
              "pass --repo-id USER/NAME (hf-vae push fills it in)", file=sys.stderr)
    if args.output == "-":
        print(card)
    else:
        # Default beside the run's files, never over the README of the current folder.
        output = args.output or str(Path(args.run_dir) / "README.md")
        _check_output(output)
        card.save(output)
        print(f"wrote {output}")


def _push(args) -> None:
    from .hub import HubPushError, push_run

    try:
        commit = push_run(args.run_dir, args.repo_id, revision=args.revision, private=args.private,
                          token=args.token, commit_message=args.commit_message, dataset_id=args.dataset_id)
    except HubPushError as error:
        print(f"hf-vae push: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"pushed {args.run_dir} to {commit.commit_url} (commit {commit.oid})")


def _push_dataset(args) -> None:
    from .hub import HubPushError, push_embedded_dataset

    try:
        commit = push_embedded_dataset(args.name, args.repo_id, revision=args.revision, private=args.private,
                                       token=args.token, commit_message=args.commit_message)
    except HubPushError as error:
        print(f"hf-vae push-dataset: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"pushed dataset {args.name} to {commit.commit_url} (commit {commit.oid})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-vae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a YAML recipe (training/configs/*.yaml)")
    p.add_argument("recipe")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    p.add_argument("--output_dir", "--output-dir", default=None)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value (repeatable)")
    p.add_argument("--push_to_hub", "--push-to-hub", action="store_true")
    p.add_argument("--hub_model_id", "--hub-model-id", default=None)
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a saved model on a dataset split")
    p.add_argument("model", help="run directory, local model folder or Hub repo id")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--split", default="test")
    p.add_argument("--config-name", "--config_name", default=None, help="the dataset's configuration")
    p.add_argument("--revision", default=None, help="the dataset's Hub branch, tag or commit")
    p.add_argument("--streaming", action="store_true", help="stream the split instead of downloading it")
    p.add_argument("--binarize", default="static", choices=["none", "static"])
    p.add_argument("--num-importance-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("sample", help="write a PNG grid of samples from a saved model")
    p.add_argument("model")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="conditional models: class ids or class names, e.g. --labels 3 cat or --labels 0,1,2 "
                        "(a word that is a class name means that class); the samples are split between them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="samples.png")
    p.set_defaults(func=_sample)

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

    from .demo.command import add_parser as add_demo_parser  # hf_vae/demo/command.py: `hf-vae demo`

    add_demo_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    import hf_vae  # noqa: F401  (registers the families)

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as error:
        # Bad recipes and inputs end with their message, not a traceback.
        # One line: a message holding a tensor or a YAML excerpt is folded.
        print(f"hf-vae {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
