# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each builds .venv from requirements.lock (torch pinned to the CPU wheel) before running.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# --no-deps: the lock pins every requirement of every package in it, and its pins win over a package's
# own caps (trackio and gradio declare pillow<13; see requirements.lock).
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python examples/main_job.py $(ARGS)

test: install
	$(BIN)/python -m pytest tests $(ARGS)

clean:
	rm -rf $(VENV) runs outputs
