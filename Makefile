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

WASM_PACKAGE := @micropython/micropython-webassembly-pyscript@1.28.0-6

bench: setup build/wasm/.installed
	$(BIN)/python bench/run.py

# the 32-bit MicroPython that bench/wasm32.py measures the heap on (node runs it)
build/wasm/.installed:
	@if command -v npm >/dev/null; then \
		mkdir -p build/wasm && npm install --prefix build/wasm --no-audit --no-fund --silent $(WASM_PACKAGE) && \
		touch $@; \
	else echo "bench: no npm (apt-get install nodejs npm): the 32-bit heap rows are skipped"; fi

clean:
	rm -rf $(VENV) build .pytest_cache
