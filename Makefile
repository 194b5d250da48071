# kadam-edu: `make book` (install + build the book) and `make test` (install + tests).
PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip
# torch is installed first, and only if missing. On a CPU-only machine prefer a CPU build, e.g.
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0
SCALE  ?= auto

.PHONY: help torch install install-test install-book test book bench clean

help:
	@echo "make test   install kadam_edu with its test extras and run the test suite"
	@echo "make book   install kadam_edu with its book extras and build the book (SCALE=smoke|cpu|paper|auto)"
	@echo "make bench  run the benchmarks (prints ratios measured side by side)"

torch:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install $(TORCH)

install: torch
	$(PIP) install -e ".[dev]"

install-test: torch
	$(PIP) install -e ".[test]"

install-book: torch
	$(PIP) install -e ".[book]"

test: install-test
	$(PYTHON) -m pytest

book: install-book
	KADAM_SCALE=$(SCALE) jupyter-book build .
	@echo "HTML: $(CURDIR)/_build/html/index.html"

bench: install-test
	$(PYTHON) benchmarks/optimizer_step.py

clean:
	rm -rf _build .pytest_cache .hypothesis *.egg-info
