# Two commands from a fresh clone:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
# Where the CPU build of torch comes from. Empty = pip's configured index (a local CPU wheel
# here); elsewhere use: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml plugins/xlc-classprior/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[dev,ray,mlflow]'
	$(PY) -m pip install -q -e plugins/xlc-classprior
	touch $@

install: $(STAMP)

demo: install
	$(VENV)/bin/xlc selftrain --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check xlc tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
