"""The GPU benchmark cannot rot: `benchmarks/gpu.py --smoke` runs on CPU here, and the `gpu`-marked tests
(`pytest -m gpu`, skipped without CUDA) check every family in bf16 on the device."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_gpu_benchmark_smoke_mode_runs_on_cpu(tmp_path):
    results = tmp_path / "gpu.md"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--results", str(results)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    text = results.read_text()
    for heading in ("## 1. Every family", "## 2. Training throughput", "## 3. Cached decoding", "## 4. Transformer prior model FLOPs"):
        assert heading in text
    assert "| NO |" not in text and " NO " not in text  # every family passed, every cached sample matched
    assert text.count("| yes |") >= 5


@pytest.fixture(scope="module")
def gpu_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu

        yield gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("family", ["vae", "cvae", "vqvae", "pixelcnn_prior", "transformer_prior"])
def test_family_forward_backward_sample_save_load_in_bf16_on_cuda(family, gpu_module, tmp_path):
    model_class, config = gpu_module.family_configs(smoke=True)[family]
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = model_class(config).to(device)
    batch = gpu_module.make_batch(config, 4, device, torch.Generator().manual_seed(0))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    if "sample" in model.capabilities:
        labels = {"labels": batch["labels"][:2]} if "labels" in batch else {}
        samples = model.sample(2, generator=torch.Generator().manual_seed(0), **labels)
        assert samples.device.type == "cuda" and samples.shape[0] == 2
    model.save_pretrained(tmp_path)
    reloaded = model_class.from_pretrained(tmp_path).to(device).eval()
    with torch.no_grad():
        a = model(**batch, generator=torch.Generator().manual_seed(0)).loss
        b = reloaded(**batch, generator=torch.Generator().manual_seed(0)).loss
    assert torch.equal(a, b)


@pytest.mark.gpu
@needs_cuda
def test_fast_pixelcnn_sampling_matches_the_naive_loop_on_cuda(gpu_module):
    model_class, config = gpu_module.family_configs(smoke=True)["pixelcnn_prior"]
    model = model_class(config).cuda().eval()
    draws = [model.sample(8, generator=torch.Generator().manual_seed(0), use_cache=c, progress=False) for c in (True, False)]
    assert torch.equal(*draws)
