"""The one training loop of every family, on Accelerate.

`train(recipe)` builds the model, opens the data (`splits`, `prior_data`), and only logs and
backpropagates the model's own `loss`. It checkpoints into pickle-free folders with a verified manifest
(`checkpoints`), resumes exactly with `resume=True` (falling back past a bad latest checkpoint), and
ends with `save_pretrained`, `metrics.json` and the PNGs (`artifacts`, `pictures`).

A non-finite loss term (or gradient norm) never passes silently: `training.on_nonfinite: stop` raises
naming the step and the term, `skip` drops that optimizer step and counts it (`train/nonfinite_skips`,
`metrics.json`); no save ever writes non-finite weights.

Data: small splits are decoded once into tensors; larger ones are read from Arrow and decoded on the fly
by `data.num_workers` DataLoader workers; a streamed train split is shuffled through a buffer, split between
processes, and its position is saved with each checkpoint (see `StreamingImageDataset` for what a
resume then guarantees).

Randomness: the shuffling comes from a loader seeded with `training.seed`; everything a step draws
(the `data.augment_shift` offsets, dynamic binarization, then the model's own sampling) comes from one
generator seeded by `derived_seed(seed, step, micro-batch, rank)`, so a resumed step draws exactly what it
drew before.

Weight EMA (`training.ema_decay`, `ema`): after each optimizer step the average takes in the weights; once
it has started, validation, the best checkpoint, the test evaluation and the saved model use it.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration, send_to_device, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..configuration_utils import set_label_names
from ..data import (ImageDataset, StreamingImageDataset, TensorDictDataset, collate_examples, make_dataloader,
                    seeded_generator)
from ..data.splitting import data_record
from ..evaluation import Metric, evaluate, to_flat_dict
from .artifacts import push_to_hub, save_pngs, write_metrics
from .checkpoints import (TrainState, atomic_save_pretrained, check_finite_weights, find_resumable, load_checkpoint,
                          recover_partial_saves, save_checkpoint, save_final_model)
from .ema import WeightEMA
from .pictures import save_pictures
from .prior_data import prepare_prior_data
from .recipe import Recipe, build_model
from .splits import check_compatible, load_data, model_inputs
from .tracking import JSONLTracker, resolve_trackers, run_names

__all__ = ["train"]


def _has_accelerator_device() -> bool:
    """A CUDA, XPU or MPS device is there for Accelerate to use."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def _make_accelerator(t, run_dir: Path) -> Accelerator:
    # Accelerate keeps its state in a process-wide singleton; a second `train()` in the same Python
    # process (notebooks, tests) may ask for another precision, so start from a fresh state.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        # On a machine without a GPU, `cpu=True` is what makes Accelerate join the gloo process group a
        # multi-process launcher set up; without it every process would train alone on the full data.
        cpu=not _has_accelerator_device(),
        mixed_precision=t.mixed_precision,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        # Each global batch is split across processes, so 1 and N processes see the same batches.
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
        log_with=[tr if tr != "jsonl" else JSONLTracker("hf_vae", run_dir / "logs") for tr in resolve_trackers(t.trackers)],
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise RuntimeError(f"launched as {launched} processes (WORLD_SIZE) but Accelerate formed a group of "
                           f"{accelerator.num_processes}: the processes would train independently")
    if t.batch_size % accelerator.num_processes:
        raise ValueError(f"`training.batch_size` must be divisible by the {accelerator.num_processes} processes, got {t.batch_size}")
    return accelerator


def train(recipe: Recipe, resume: bool = False, *, dataset=None) -> Path:
    """Train `recipe`; returns the run directory (model, metrics.json, PNGs, logs, checkpoints).

    Args:
        recipe: the run.
        resume: continue from the newest usable checkpoint in `training.output_dir`.
        dataset: a `datasets.Dataset`, `IterableDataset`, `DatasetDict` or `IterableDatasetDict` to train
            on instead of opening `recipe.data.dataset` (the recipe's split names and sizes still apply).
    """
    called = time.perf_counter()
    t = recipe.training
    run_dir = Path(t.output_dir)
    checkpoints_dir = run_dir / "checkpoints"
    accelerator = _make_accelerator(t, run_dir)
    if run_dir.exists() and not resume and any(run_dir.glob("checkpoints/checkpoint-*")):
        raise ValueError(f"`output_dir` must not hold checkpoints unless --resume is passed, got {str(run_dir)!r}")
    set_seed(t.seed)

    splits = load_data(recipe, dataset, rank=accelerator.process_index, world_size=accelerator.num_processes)
    data = data_record(recipe.data.dataset if dataset is None else dataset, splits,
                       config_name=recipe.data.config_name, revision=recipe.data.revision)
    model = build_model(recipe)
    _name_classes(model, splits["train"].label_names)
    splits = prepare_prior_data(model, splits, recipe, run_dir)
    dynamic_binarization = recipe.data.train_binarize == "dynamic"
    check_compatible(model, splits, dynamic_binarization=dynamic_binarization, augment_shift=recipe.data.augment_shift)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if t.gradient_checkpointing:
        _enable_gradient_checkpointing(model)

    # The fused AdamW (one kernel per parameter, not ~10 tensor ops): ~4% less time per step of the
    # mnist5k VAE on one CPU thread (profiled, interleaved A/B); the same update to float rounding.
    fused = accelerator.device.type in ("cpu", "cuda", "mps", "xpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2),
                                  weight_decay=t.weight_decay, fused=fused or None)
    scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.warmup_steps, num_training_steps=t.max_steps)
    streaming = isinstance(splits["train"], StreamingImageDataset)
    if streaming:
        # Each process reads its own part of the stream (split_dataset_by_node), in the main process, so that
        # the stream's state_dict is exactly the position of the batches consumed; not prepared (no dispatch).
        train_loader = torch.utils.data.DataLoader(splits["train"], batch_size=t.batch_size // accelerator.num_processes,
                                                   collate_fn=collate_examples, drop_last=True)
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    else:
        workers = recipe.data.num_workers if isinstance(splits["train"], ImageDataset) else 0  # tensors need none
        train_loader = make_dataloader(splits["train"], t.batch_size, shuffle=True, seed=t.seed, drop_last=True,
                                       num_workers=workers, prefetch_factor=recipe.data.prefetch_factor,
                                       pin_memory=accelerator.device.type == "cuda")
        if len(train_loader) == 0:
            raise ValueError(f"`training.batch_size` must not exceed the {len(train_loader.dataset)} training examples, got {t.batch_size}")
        model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    state = TrainState()
    if isinstance(splits["train"], TensorDictDataset) and accelerator.is_main_process:
        # Read into memory, it left its bad rows out once, at load (a resumed state already holds them).
        state.skipped_images = splits["train"].num_skipped
    # What a resume must match: the recipe, minus the fields `checkpoints.RESUMABLE_CHANGES` allows (the
    # architecture is the recipe's `model.*`; `load_checkpoint` also compares the parameter shapes).
    fingerprint = recipe.to_flat_dict()
    # Training autocasts explicitly (`accelerator.autocast()` below), so drop the autocast wrapper that
    # `prepare` put on `forward`: evaluation, the test metrics and the saved model then run in fp32.
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    # The EMA copies the unwrapped model (on its device) before a resume loads the averaged weights into it.
    ema = None if t.ema_decay is None else WeightEMA(unwrapped, t.ema_decay, t.ema_start_step)
    objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "fingerprint": fingerprint, "ema": ema}

    if resume:
        if accelerator.is_main_process:
            recover_partial_saves(run_dir)
        accelerator.wait_for_everyone()
        latest, manifest = find_resumable(checkpoints_dir)
        if latest is None:
            accelerator.print(f"--resume: no usable checkpoint in {checkpoints_dir}, starting from scratch")
        else:
            data_state = load_checkpoint(accelerator, latest, manifest, state, **objects)
            if streaming and data_state is not None:
                splits["train"].set_epoch(state.epoch)
                splits["train"].load_state_dict(data_state)
            accelerator.print(f"resumed from {latest.name} at step {state.step}")
            if accelerator.is_main_process:
                JSONLTracker.truncate(run_dir / "logs" / "metrics.jsonl", state.step)
    accelerator.init_trackers("hf_vae", config=recipe.to_flat_dict(), init_kwargs=run_names(run_dir.name))

    running: dict[str, list[float]] = {}
    progress = tqdm(total=t.max_steps, initial=state.step, desc="train", disable=not (t.progress and accelerator.is_local_main_process), dynamic_ncols=True)
    start_time = time.time() - state.elapsed_seconds
    stop = False
    bad_term = None  # the first non-finite loss term of the current accumulation window
    model.train()
    while state.step < t.max_steps and not stop:
        if streaming:  # resumed streams continue from their loaded state_dict, not by skipping batches
            splits["train"].set_epoch(state.epoch)
            loader = _while_every_process_has_a_batch(train_loader, accelerator)
        else:
            train_loader.set_epoch(state.epoch)
            loader = accelerator.skip_first_batches(train_loader, state.batches_in_epoch) if state.batches_in_epoch else train_loader
        step_start = time.perf_counter()
        for batch in loader:
            state.skipped_images += int(batch.pop("num_skipped", 0))
            if "pixel_values" not in batch and unwrapped.main_input_name not in batch:
                state.batches_in_epoch += 1  # every image of this batch was skipped
                continue
            if streaming:
                batch = send_to_device(batch, accelerator.device)
            generator = seeded_generator(t.seed, state.step, state.batches_in_epoch, accelerator.process_index)
            inputs = model_inputs(unwrapped, batch, generator=generator, global_step=state.step,
                                  dynamic_binarization=dynamic_binarization, augment_shift=recipe.data.augment_shift)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    output = model(**inputs)
                bad_term = bad_term or _nonfinite_term(output)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients:
                    bad_term = _nonfinite_step(accelerator, model, t, bad_term)
                    if bad_term is not None and t.on_nonfinite == "stop":
                        raise ValueError(f"the training loss must stay finite, got {bad_term} at step {state.step + 1} "
                                         f"(training.on_nonfinite=stop; lower training.learning_rate, or set "
                                         f"training.on_nonfinite=skip to skip such steps); no checkpoint or model was written for it")
                    if bad_term is None:
                        optimizer.step()
                    else:  # skip: no update from this window's gradients
                        state.nonfinite_skips += 1
                        accelerator.print(f"step {state.step + 1}: skipped, {bad_term} ({state.nonfinite_skips} skipped so far)")
                scheduler.step()
                optimizer.zero_grad()
            state.batches_in_epoch += 1
            state.images_seen += len(inputs[unwrapped.main_input_name]) * accelerator.num_processes
            if bad_term is None:  # a skipped window's NaN terms would turn the logged means into NaN
                for key, value in _scalar_terms(output).items():
                    running.setdefault(key, []).append(value)
            if not accelerator.sync_gradients:
                continue
            bad_term = None

            state.step += 1
            if ema is not None:
                ema.step(unwrapped, state.step)
            state.step_seconds += time.perf_counter() - step_start
            if state.seconds_to_first_step is None:  # opening the data, building the model, the first batch
                state.seconds_to_first_step = time.perf_counter() - called
            state.elapsed_seconds = time.time() - start_time
            progress.update(1)
            if state.step % t.log_every == 0 or state.step == t.max_steps:
                logs = {f"train/{k}": float(np.mean(v)) for k, v in running.items()}
                logs["train/lr"] = scheduler.get_last_lr()[0]
                if state.nonfinite_skips:
                    logs["train/nonfinite_skips"] = state.nonfinite_skips
                logs.update({f"train/{name}": value for name, value in unwrapped.schedule_values(state.step).items()})
                running = {}
                accelerator.log(logs, step=state.step)
                progress.set_postfix({k.removeprefix("train/"): f"{v:.3g}" for k, v in logs.items() if k != "train/lr"})
            time_up = _time_is_up(accelerator, t, state)
            if time_up:
                accelerator.print(f"time budget of {t.max_time_minutes} min reached at step {state.step}")
            # The last step of a time-capped run is validated too: the best-weights choice sees every step trained.
            if state.step % t.eval_every == 0 or state.step == t.max_steps or time_up:
                evaluated = ema.module if ema is not None and ema.started else unwrapped
                stop = _evaluate_and_track(recipe, accelerator, evaluated, splits, state, run_dir) or stop
                model.train()
            stop = stop or time_up
            if state.step % t.save_every == 0 or state.step == t.max_steps or stop:
                data_state = splits["train"].state_dict() if streaming else None
                save_checkpoint(accelerator, checkpoints_dir, state, t.save_total_limit, data_state=data_state, **objects)
            if stop or state.step >= t.max_steps:
                break
            step_start = time.perf_counter()
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    progress.close()
    accelerator.wait_for_everyone()
    state.skipped_images = int(accelerator.gather(torch.tensor([state.skipped_images], device=accelerator.device)).sum())

    if accelerator.is_main_process:
        _finish(recipe, accelerator, unwrapped, splits, state, run_dir, data, ema)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def _time_is_up(accelerator, t, state) -> bool:
    """Whether `training.max_time_minutes` has passed; with several processes, whether it has for any of them, so
    that all stop at the same step (the evaluation and checkpoint that follow are collective)."""
    if t.max_time_minutes is None:
        return False
    time_up = state.elapsed_seconds > 60 * t.max_time_minutes
    if accelerator.num_processes > 1:
        time_up = bool(accelerator.reduce(torch.tensor([float(time_up)], device=accelerator.device), reduction="sum").item())
    return time_up


def _enable_gradient_checkpointing(model) -> None:
    """Recompute the model's repeated blocks in the backward pass (`training.gradient_checkpointing`), through
    transformers 5's `activation_checkpointing_enable` where it has it (its new name), else the old one."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def _while_every_process_has_a_batch(loader, accelerator):
    """The loader's batches while every process still has one. Each process streams its own part, and the
    parts can differ by a batch; a process that went on alone would wait forever for the others' gradients."""
    for batch in itertools.chain(loader, [None]):
        if accelerator.num_processes > 1:
            have = accelerator.gather(torch.tensor([batch is not None], device=accelerator.device))
            if not bool(have.all()):
                return
        if batch is None:
            return
        yield batch


def _nonfinite_term(output) -> str | None:
    """"`name` = value, ..." for the non-finite 0-dim terms of a ModelOutput (the loss and its named terms), else None."""
    bad = [f"`{key}` = {float(value.detach())}" for key, value in output.items()
           if isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point() and not torch.isfinite(value)]
    return ", ".join(bad) or None


def _nonfinite_step(accelerator, model, t, bad_term: str | None) -> str | None:
    """Every process agrees on whether this optimizer step is non-finite (a loss term on any process, or the
    gradient norm); clips the gradients as `training.max_grad_norm` says. Returns what went non-finite."""
    if accelerator.num_processes > 1:
        flags = accelerator.gather(torch.tensor([bad_term is not None], device=accelerator.device))
        if flags.any() and bad_term is None:
            bad_term = "a loss term on another process"
    if bad_term is None and t.max_grad_norm:
        norm = accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        # fp16 runs leave inf gradients to the GradScaler, which skips those steps itself.
        if t.mixed_precision != "fp16" and not math.isfinite(float(norm)):
            bad_term = f"the gradient norm = {float(norm)}"
    return bad_term


def _scalar_terms(output) -> dict[str, float]:
    """Every 0-dim tensor of a ModelOutput (the named loss terms and health numbers)."""
    return {k: float(v.detach()) for k, v in output.items() if isinstance(v, torch.Tensor) and v.ndim == 0}


def _validation_metric(metrics: dict[str, Metric]) -> float:
    """Lower is better: the NLL where validation estimates one (the priors' exact one; a VAE's IWAE bound when
    `evaluation.validation_importance_samples` > 0, which is what an importance-weighted objective improves while
    its ELBO gets worse), else -ELBO, else the loss."""
    for name, sign in (("nll", 1.0), ("elbo", -1.0), ("loss", 1.0), ("reconstruction_loss", 1.0)):
        if name in metrics:
            return sign * float(metrics[name].value)
    raise ValueError(f"`metrics` must hold one of elbo, nll, loss or reconstruction_loss, got {sorted(metrics)}")


def _evaluate_and_track(recipe, accelerator, model, splits, state, run_dir) -> bool:
    """Evaluate on the validation split (or test when none is carved), log, keep the best weights.

    Only the main process evaluates (on the unwrapped model); the stop decision reaches every process
    through Accelerate's trigger. Returns True when early stopping fires.
    """
    t, e = recipe.training, recipe.evaluation
    split = "validation" if splits["validation"] is not None else "test"
    if accelerator.is_main_process:
        with warnings.catch_warnings():
            # Early in training most units are inactive; the collapse warning is for the final model.
            warnings.simplefilter("ignore", UserWarning)
            metrics = evaluate(model, splits[split], batch_size=e.batch_size,
                               num_importance_samples=e.validation_importance_samples, seed=t.seed, progress=False)
        accelerator.log(to_flat_dict(metrics, prefix=f"{split}/"), step=state.step)
        value = _validation_metric(metrics)
        if value < state.best_metric:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
            if t.keep_best:
                atomic_save_pretrained(model, run_dir / "best_model")
        else:
            state.evals_without_improvement += 1
            if t.early_stopping_patience is not None and state.evals_without_improvement >= t.early_stopping_patience:
                accelerator.print(f"early stopping at step {state.step}: best {split} value {state.best_metric:.3f} at step {state.best_step}")
                accelerator.set_trigger()
    return accelerator.check_trigger()


def _name_classes(model, names: list[str] | None) -> None:
    """A conditional model takes the dataset's ClassLabel names as `config.id2label` / `label2id`."""
    if not model.is_conditional or names is None:
        return
    if len(names) != model.config.num_classes:
        warnings.warn(f"the dataset's {len(names)} class names are not recorded in the config: the model has "
                      f"num_classes={model.config.num_classes}", stacklevel=3)
        return
    set_label_names(model.config, names)


def _save_image_processor(model, d, run_dir: Path) -> None:
    """`preprocessor_config.json` beside the model: images become its inputs as this run's test data did."""
    from ..image_processing import save_image_processor

    vqvae_config = None
    if type(model).input_kind == "tokens" and model.config.token_source == "vqvae_codes":
        from ..generation import load_vqvae

        vqvae_config = load_vqvae(model).config
    save_image_processor(model.config, run_dir, vqvae_config=vqvae_config, center_crop=d.center_crop,
                         binarize=d.eval_binarize, binarize_seed=d.binarize_seed)


def _finish(recipe, accelerator, model, splits, state, run_dir: Path, data: dict, ema=None) -> None:
    """Best weights (else the EMA's, if any) -> final test evaluation -> save_pretrained, metrics.json, the
    PNGs, the push."""
    t, e = recipe.training, recipe.evaluation
    best = run_dir / "best_model"
    if t.keep_best and best.exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(best / "model.safetensors"))
        # best_model holds what was evaluated: the EMA once it had started (step >= ema_start_step, >= 1).
        uses_ema = ema is not None and state.best_step >= max(ema.start_step, 1)
    else:
        uses_ema = ema is not None and ema.started
        if uses_ema:
            model.load_state_dict(ema.module.state_dict())
    model.eval()
    metrics = evaluate(model, splits["test"], batch_size=e.batch_size,
                       num_importance_samples=e.num_importance_samples, seed=t.seed,
                       max_examples=e.max_examples, progress=t.progress, decoder_precision=e.decoder_precision)
    accelerator.log(to_flat_dict(metrics, prefix="test/"), step=state.step)
    if state.nonfinite_skips:
        warnings.warn(f"{state.nonfinite_skips} of {state.step} optimizer steps were skipped for a non-finite loss "
                      "(training.on_nonfinite=skip); check the metrics before using this model", stacklevel=2)
    save_final_model(model, run_dir)
    _save_image_processor(model, recipe.data, run_dir)
    write_metrics(run_dir, recipe, state, metrics, accelerator.num_processes, data=data,
                  ema=None if ema is None else {**ema.summary(), "weights": "ema" if uses_ema else "trained"})
    save_pngs(model, splits["test"], run_dir, num_samples=e.num_samples, seed=t.seed)
    save_pictures(model, splits["test"], run_dir, metrics)  # (curves, latent space, codebook; never raises)
    for name, metric in metrics.items():
        if not isinstance(metric.value, list):
            accelerator.print(f"  {name:>20}: {metric}")
    if recipe.hub.push_to_hub:
        check_finite_weights(model, f"the Hub repo {recipe.hub.hub_model_id}")
        accelerator.print(f"pushed to {push_to_hub(run_dir, recipe.hub)}")
