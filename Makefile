# kadam-edu: `make book` (install + build the book) and `make test` (install + tests).
PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip
# torch is installed first, and only if missing. On a CPU-only machine prefer a CPU build, e.g.
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0
SCALE  ?= auto
# SOLUTIONS=1: build the instructors' book (the assignments' masters with solutions, _toc_solutions.yml).
SOLUTIONS ?=
TOCFLAG = $(if $(SOLUTIONS),--toc _toc_solutions.yml,)
# Warnings are errors (-W), cross-references are checked (-n); CI builds with the same flags.
BOOKFLAGS ?= -W -n --keep-going
# Executed notebooks show no progress bars (a frozen bar is noise on a static page).
export KADAM_PROGRESS ?= 0

.PHONY: help torch install install-test install-book test test-notebooks book assignments check-pages measure-pages check bench clean

help:
	@echo "make test   install kadam_edu with its test extras and run the test suite"
	@echo "make book   install kadam_edu with its book extras and build the book (SCALE=smoke|cpu|gpu|paper|auto)"
	@echo "make check  everything CI runs: make test, the notebooks at smoke scale, make book SCALE=smoke, check-pages"
	@echo "make bench  run the benchmarks (prints ratios measured side by side)"
	@echo "make assignments  otter-grader student notebooks and autograders into _build/assignments/"

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

# Execute every notebook at smoke scale under nbval (errors fail; outputs are not compared).
test-notebooks: install-test install-book
	KADAM_SCALE=smoke $(PYTHON) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider book

# The execution cache is keyed on the notebooks' code, not on the scale: clear it when the scale changes.
book: install-book
	@mkdir -p _build
	@if [ "$$(cat _build/.scale 2>/dev/null)" != "$(SCALE)" ]; then rm -rf _build/.jupyter_cache _build/jupyter_execute; fi
	@echo "$(SCALE)" > _build/.scale
	KADAM_SCALE=$(SCALE) jupyter-book build . $(BOOKFLAGS) $(TOCFLAG)
	$(PYTHON) tools/offline.py _build/html
	@echo "HTML: $(CURDIR)/_build/html/index.html"

# Open every page in headless Chromium with the network cut (skips, saying so, without Chromium;
# fails instead under CI=true, where .ci/run installs it).
check-pages:
	$(PYTHON) tools/check_pages.py _build/html

# What the live charts cost a reader: page weight and time to the first chart (headless Chromium).
measure-pages:
	$(PYTHON) tools/check_pages.py _build/html --measure

# otter assign every assignment master into _build/assignments/<name>/ (student/ and autograder/ with its zip).
assignments: install
	KADAM_SCALE=smoke $(PYTHON) tools/assignments.py build _build/assignments

check: install test test-notebooks
	$(MAKE) book SCALE=smoke
	$(MAKE) check-pages

bench: install-test
	$(PYTHON) benchmarks/optimizer_step.py

clean:
	rm -rf _build .pytest_cache .hypothesis *.egg-info
