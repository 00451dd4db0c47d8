# Two commands from a fresh clone:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
# Where the CPU build of torch comes from. Empty = pip's configured index (a local CPU wheel
# here); elsewhere use: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
LABEL_STUDIO := $(VENV)/label-studio-sdk

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml plugins/xlc-classprior/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[dev,ray,mlflow]'
	$(PY) -m pip install -q -e plugins/xlc-classprior
	# Label Studio's SDK, only to check `xlc audit`'s files against its own labeling-config and
	# prediction validation (tests/test_audit.py). Apart, without its dependencies: they would
	# replace packages xlc needs (numpy); these are all its validator imports.
	$(PY) -m pip install -q --no-deps --target $(LABEL_STUDIO) label-studio-sdk==2.1.2 xmljson==0.2.1 \
		jsf==0.11.2 lxml==6.1.3 faker==40.63.0 rstr==3.2.2 smart_open==9.0.2 wrapt==2.5.2 pyjwt==2.15.1 \
		appdirs==1.4.4
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
