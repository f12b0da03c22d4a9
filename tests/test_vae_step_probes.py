"""`benchmarks/vae_step_probes.py --smoke`: the probes behind the throughput target's note run, their
alternative formulations compute the layers they replace, and the table lands as a section of the results file."""

import re

from .model_tester import import_benchmark, single_thread  # noqa: F401 (autouse fixture)


def test_step_probes_smoke_run_writes_its_section(tmp_path):
    probes = import_benchmark("vae_step_probes")
    results = tmp_path / "throughput.md"
    results.write_text("# throughput\n")  # an existing results file keeps what it had
    summary = probes.main(["--smoke", "--results", str(results)])
    text = results.read_text()
    assert text.startswith("# throughput\n") and "<!-- begin step_probes -->" in text
    # The tiny recipe's decoder has two transposed convolutions and a one-channel last convolution: each
    # alternative row reproduces its layer to float rounding.
    rows = summary["alternatives"]
    assert sum("pixel shuffle" in row for row in rows) == 2 and sum("phase convolutions" in row for row in rows) == 2
    assert sum("matrix product" in row for row in rows) == 1
    for row in rows:
        assert float(row.rstrip(" |").rsplit("| ", 1)[1]) < 1e-4, row
    assert set(summary["steps"]) == {"the trainer's step", "in-place NHWC decoder"}
    assert all(ms > 0 for ms in summary["steps"].values())
    assert re.search(r"^\| \*\*all convolutions\*\* \| \|( \*\*[0-9.]+\*\* \|){4}$", text, re.MULTILINE)


def test_phase_formulations_match_a_transposed_convolution_with_other_widths():
    import torch

    probes = import_benchmark("vae_step_probes")
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1)
    x = torch.randn(2, 3, 5, 6)
    reference = layer(x)
    for formulation in (probes.transposed_as_subpixel, probes.transposed_as_phases):
        torch.testing.assert_close(formulation(x, layer.weight, layer.bias), reference, rtol=1e-5, atol=1e-5)
