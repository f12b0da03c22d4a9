"""`TransformerPriorModel.generate` as a transformers user calls it: no `input_ids`, the same tokens as
`sample` for the same seed, and `guidance_scale` as the prior's own null-label guidance."""

import pytest
import torch
from transformers import GenerationConfig

from hf_vae import TransformerPriorConfig, TransformerPriorModel

from .model_tester import single_thread  # noqa: F401 (autouse fixture)

TINY = dict(vocab_size=5, grid_size=3, num_classes=3, label_dropout=0.25, num_layers=1, num_heads=2, hidden_size=16)
LABELS = torch.tensor([0, 2, 1])


def _model(**overrides):
    torch.manual_seed(0)
    return TransformerPriorModel(TransformerPriorConfig(**{**TINY, **overrides})).eval()


def _seed(seed=4):
    return torch.Generator().manual_seed(seed)


def test_generate_needs_no_input_ids_and_stops_at_the_grid_end():
    """The start token is the class token (or BOS): generate samples whole grids from nothing."""
    model = _model()
    assert model.generation_config.max_length == 9 and model.generation_config.do_sample is True
    assert model.generate(labels=LABELS).shape == (3, 9)
    assert model.generate(labels=1, num_samples=2).shape == (2, 9)
    unconditional = _model(num_classes=None, label_dropout=0.0)
    assert unconditional.generate().shape == (1, 9)
    assert unconditional.generate(num_samples=4).shape == (4, 9)
    assert model.generate(labels=LABELS, max_new_tokens=4).shape == (3, 4)


@pytest.mark.parametrize("guidance_scale", [1.0, 0.0, 2.5])
@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_p": 0.9, "temperature": 0.7}])
def test_generate_draws_the_tokens_of_sample(guidance_scale, options):
    """Same generator seed -> the same grids as `sample`, with and without guidance and warpers."""
    model = _model()
    generated = model.generate(labels=LABELS, guidance_scale=guidance_scale, generator=_seed(), **options)
    sampled = model.sample(3, labels=LABELS, guidance_scale=guidance_scale, generator=_seed(), progress=False, **options)
    assert torch.equal(generated.view(3, 3, 3), sampled)
    other = model.generate(labels=LABELS, guidance_scale=guidance_scale, generator=_seed(5), **options)
    assert not torch.equal(other, generated)  # the generator drives the draws


def test_generate_with_a_generation_config_and_the_global_seed_equals_sample():
    """transformers' convention: no generator, the global RNG; seeding it before each call gives equality."""
    model = _model()
    torch.manual_seed(7)
    generated = model.generate(generation_config=GenerationConfig(guidance_scale=3.0, top_k=4), labels=LABELS)
    torch.manual_seed(7)
    sampled = model.sample(3, labels=LABELS, guidance_scale=3.0, top_k=4, progress=False)
    assert torch.equal(generated.view(3, 3, 3), sampled)
    # Guidance set on the model's own generation config is routed the same way.
    model.generation_config.guidance_scale = 3.0
    assert torch.equal(model.generate(labels=LABELS, generator=_seed()).view(3, 3, 3),
                       model.sample(3, labels=LABELS, guidance_scale=3.0, generator=_seed(), progress=False))


def test_guidance_is_the_priors_null_label_guidance_not_text_guidance():
    """guidance_scale=s uses uncond + s * (cond - uncond) with the null label; s=0 is the unconditional model."""
    model = _model()
    unconditional = model.generate(labels=LABELS, guidance_scale=0.0, generator=_seed())
    assert torch.equal(unconditional, model.generate(num_samples=3, generator=_seed()))  # labels=None: null label
    greedy = model.generate(labels=LABELS, guidance_scale=2.0, do_sample=False)
    guided_logits = []
    for position in range(9):  # recompute each step's guided logits from full passes
        cond = model(greedy[:, :position], labels=LABELS, use_cache=True).logits[:, -1]
        uncond = model(greedy[:, :position], labels=None, use_cache=True).logits[:, -1]
        guided_logits.append(uncond + 2.0 * (cond - uncond))
    assert torch.equal(torch.stack(guided_logits, 1).argmax(-1), greedy)
    with pytest.raises(ValueError, match="`guidance_scale` must be 1"):
        model.generate(guidance_scale=2.0)  # nothing to guide towards
    with pytest.raises(ValueError, match="`guidance_scale` must be 1"):
        _model(label_dropout=0.0).generate(labels=LABELS, guidance_scale=2.0)  # no null label trained
    with pytest.raises(ValueError, match="`guidance_scale` must be 1"):
        _model(num_classes=None, label_dropout=0.0).generate(num_samples=2, guidance_scale=2.0)


def test_num_return_sequences_prefixes_and_output_objects():
    model = _model()
    repeated = model.generate(labels=LABELS, num_return_sequences=2, guidance_scale=2.0, generator=_seed(1))
    sampled = model.sample(6, labels=LABELS.repeat_interleave(2), guidance_scale=2.0, generator=_seed(1), progress=False)
    assert torch.equal(repeated.view(6, 3, 3), sampled)
    full = model.generate(labels=LABELS, do_sample=False)
    assert torch.equal(model.generate(full[:, :4], labels=LABELS, do_sample=False), full)  # completes a prefix
    assert torch.equal(model.generate(input_ids=full[:, :4], labels=LABELS, do_sample=False), full)  # transformers' name
    output = model.generate(labels=LABELS, guidance_scale=2.0, return_dict_in_generate=True, output_logits=True,
                            generator=_seed())
    assert torch.equal(output.sequences, model.generate(labels=LABELS, guidance_scale=2.0, generator=_seed()))


def test_generate_refuses_bad_arguments_before_decoding():
    model = _model()
    with pytest.raises(ValueError, match="`num_samples` must be None"):
        model.generate(torch.zeros(2, 1, dtype=torch.long), labels=LABELS[:2], num_samples=2)
    with pytest.raises(ValueError, match="`num_samples` must be"):
        model.generate(labels=1, num_samples=0)
    with pytest.raises(ValueError, match="`num_beams` must be 1"):
        model.generate(labels=LABELS, num_beams=2)
    with pytest.raises(ValueError, match="`temperature` must be"):
        model.generate(labels=LABELS, temperature=0.0)
    with pytest.raises(ValueError, match="`labels` must"):
        model.generate(labels=[0, 7])


def test_generate_works_on_a_reloaded_folder_without_generation_defaults(tmp_path):
    """Folders saved before generate() learnt its defaults hold a bare generation_config.json."""
    model = _model()
    model.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text('{"_from_model_config": true}')
    reloaded = TransformerPriorModel.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded.generate(labels=LABELS, generator=_seed()).view(3, 3, 3),
                       model.sample(3, labels=LABELS, generator=_seed(), progress=False))
