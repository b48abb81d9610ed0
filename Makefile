# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LIB := build/lib

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed $(LIB)/umqtt/simple.py
	@tools/need_system.sh

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(LIB)/umqtt/simple.py: tools/fetch_umqtt.py | $(VENV)/.installed
	$(BIN)/python tools/fetch_umqtt.py $(LIB)

demo: setup
	$(BIN)/meterbridge demo $(if $(BROKER),--broker $(BROKER))

test: setup
	$(BIN)/ruff check firmware host tests tools bench
	$(BIN)/pytest -q tests

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build .pytest_cache
