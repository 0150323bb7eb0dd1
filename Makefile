# The two commands a newcomer needs:
#   make demo   set up .venv and run the pipeline on the built-in sample (no server, no key)
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU torch/torchvision builds known to work together (see README, "Two commands").
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench clean system-deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/forge demo

# Headless Chromium renders the HTML report in the tests (Debian/Ubuntu package).
system-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Chromium (e.g. sudo apt-get install chromium) for the report tests"; fi; }

test: $(BIN)/.installed system-deps
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) runs .pytest_cache
