# Two commands for a fresh machine: `make demo` (the end-to-end demo) and `make test`.
# Both create .venv and install what is missing. PyTorch comes from pip (CPU or CUDA build).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test test-fast lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test,deploy]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/udistill demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# every module at tiny size, without the slow tier (kills, torchrun, end to end, fuzzing)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# ruff (configured in pyproject.toml): lint rules, then the formatter's check (nothing is rewritten);
# lint-imports: the import contract of pyproject.toml [tool.importlinter] (docs/architecture.md)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
