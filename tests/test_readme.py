"""README as a contract: every ```python block of README.md runs as pasted, in order, in ONE fresh
interpreter, with the in-suite Hub server (tests/hub_server.py, $HF_ENDPOINT from conftest.py) standing
in for huggingface.co, HF_HUB_OFFLINE unset and no terminal to answer a prompt."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# The whole README on a busy 2-core CPU (its blocks use small settings: the k=1000 evaluation is described
# in the text, not run).
TIME_BUDGET_S = 600
# Each block runs under its own file name, so a traceback names the README line it failed on.
RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for index, (line, code) in enumerate(json.load(open(sys.argv[1]))):
    print(f"=== README block {index} (line {line})", flush=True)
    exec(compile(code, f"README.md, block {index} from line {line}", "exec"), namespace)
print("=== README done", flush=True)
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block, in order."""
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)]


def test_python_blocks_are_found():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4  # quick start, pipelines, generate, Hub
    assert all("import hf_vae" in code for _, code in blocks)  # every block says why it imports hf_vae


def test_readme_python_blocks_run_as_pasted(tmp_path, hub_server):
    blocks = python_blocks(README.read_text())
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # HF_ENDPOINT, HF_HOME, HF_TOKEN: conftest.py's local Hub
    env.pop("HF_HUB_OFFLINE", None)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "runner.py", "blocks.json"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=TIME_BUDGET_S,
    )
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "=== README done" in result.stdout
    assert "Do you wish to run the custom code" not in output  # no trust_remote_code prompt on any path
    assert seconds < TIME_BUDGET_S
    # What the blocks claim happened, happened: the quick start saved a model, the Hub block pushed it.
    assert (tmp_path / "my-vae" / "model.safetensors").is_file()
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub_server.files("your-name/my-vae"))
