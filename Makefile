PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/physadv demo

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

bench: setup
	$(BIN)/pip install -e '.[dev,bench]'
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

docs: setup  # every figure in docs/ and README number block, with its command and commit (ONLY=name,name)
	$(BIN)/python docs/figures.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) runs .cache
