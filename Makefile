# Quick start on a fresh machine:  make run   (reproduce the study)   make test   (the test suite)
# Each target sets itself up: virtual environment, install, data. Running it again redoes nothing.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.fmnist-installed
OUT    ?= results

.PHONY: run test data bench readme install clean

# The study runs once: its results are never replaced (fmnist refuses without --overwrite);
# `make run` again shows them. `make run OUT=other` runs it afresh elsewhere.
run: $(OUT)/results.json
	@cat $(OUT)/results.md

$(OUT)/results.json: | data
	$(BIN)/fmnist reproduce --out $(OUT)

test: data browser
	$(BIN)/python -m pytest -q

bench: data
	$(BIN)/python benchmarks/run.py

# The README's measured tables, rewritten from the committed results files in src/fmnist/measured/
# (measure first: benchmarks/accuracy.py, benchmarks/run.py --out). A test fails while they differ.
readme: $(STAMP)
	$(BIN)/python -m fmnist.measured.readme

install: $(STAMP)

# torch is pinned in constraints.txt: an open range would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@# Compile the numba kernels of dense and conv training now (~30 s, cached on disk), not in
	@# the first epoch of the first run.
	$(BIN)/python -m fmnist._warmup
	touch $(STAMP)

# The data: already found (and verified) by fmnist, else Debian's package, else the official mirrors.
data: $(STAMP)
	@$(BIN)/fmnist data >/dev/null 2>&1 || $(MAKE) --no-print-directory get-data

.PHONY: get-data
get-data:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || true; \
	fi
	@$(BIN)/fmnist data >/dev/null 2>&1 || $(BIN)/fmnist data --fetch

# The browser tests drive Debian's chromium: Playwright's own browser download cannot work
# where only package registries are reachable. Without root or apt they skip, saying why.
.PHONY: browser
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || true; \
	fi

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info src/*.egg-info
