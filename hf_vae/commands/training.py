"""`hf-vae train RECIPE` (a shipped recipe by name, or a YAML path) and `hf-vae recipes` (the shipped list)."""

from __future__ import annotations

from pathlib import Path


def _check_recipe_file(path: Path) -> None:
    """The recipe must be a YAML mapping: invalid YAML or a list ends with one error line, not a traceback."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"`recipe` must be valid YAML, got {str(path)!r}: {' '.join(str(error).split())}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"`recipe` must be a YAML mapping of sections (model, data, training, ...), got a "
                         f"{type(raw).__name__} in {str(path)!r}")


def check_vqvae_exists(recipe, info) -> None:
    """A prior over VQ-VAE codes needs its VQ-VAE before any data is read: a local path that does not exist
    (and cannot be a Hub repo id) stops here, naming the folder and the command that makes it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    source = recipe.model.config.get("vqvae_name_or_path")
    if not isinstance(source, str) or Path(source).expanduser().exists():
        return
    try:
        validate_repo_id(source)
        return  # a Hub repo id: the loader downloads it (and names it if it does not exist)
    except HFValidationError:
        pass
    command = info.prerequisite_command if info is not None and info.prerequisite_command else (
        f"hf-vae train vqvae_mnist5k --output_dir {source}")
    raise ValueError(f"`model.config.vqvae_name_or_path` must be a trained VQ-VAE folder or Hub repo id, got {source!r} "
                     f"(no such folder): train the VQ-VAE first with `{command}`")


def _train(args) -> None:
    from ..hub import validate_repo_id
    from ..recipes import resolve_recipe
    from ..training import Recipe, train

    path, info = resolve_recipe(args.recipe)
    _check_recipe_file(path)
    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"training.output_dir={args.output_dir}")
    if args.push_to_hub:
        overrides.append("hub.push_to_hub=true")
    if args.hub_model_id:
        validate_repo_id(args.hub_model_id, "hub_model_id")  # before training, not after it
        overrides.append(f"hub.hub_model_id={args.hub_model_id}")
    recipe = Recipe.from_yaml(path, overrides)
    if recipe.hub.hub_model_id is not None:
        validate_repo_id(recipe.hub.hub_model_id, "hub.hub_model_id")
    check_vqvae_exists(recipe, info)
    run_dir = train(recipe, resume=args.resume)
    print(f"saved to {run_dir}")


def _recipes(args) -> None:
    from ..recipes import RECIPE_DIR, list_recipes

    infos = list_recipes()
    width = max(len(info.name) for info in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.description}")
        if info.requires:
            print(f"{'':<{width}}  requires {info.requires}")
        if info.prerequisite_command:
            print(f"{'':<{width}}  make it first: {info.prerequisite_command}")
    print(f"\n{len(infos)} recipes in {RECIPE_DIR}; train one with `hf-vae train NAME` "
          "(copy the YAML to change it, then `hf-vae train my_recipe.yaml`)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a recipe: a shipped one by name (hf-vae recipes) or a YAML file")
    p.add_argument("recipe", help="a shipped recipe's name (vae_mnist5k) or a YAML file")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    p.add_argument("--output_dir", "--output-dir", default=None)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value (repeatable)")
    p.add_argument("--push_to_hub", "--push-to-hub", action="store_true")
    p.add_argument("--hub_model_id", "--hub-model-id", default=None)
    p.set_defaults(func=_train)

    p = sub.add_parser("recipes", help="list the shipped recipes, with what each needs first")
    p.set_defaults(func=_recipes)
