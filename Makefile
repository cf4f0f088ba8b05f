# Two entry points a newcomer needs (see README.md); both install what they need into .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-fast lint report clean-runs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Lint and format checks (ruff, as configured in pyproject.toml), then the whole suite.
lint: install
	$(VENV)/bin/ruff check lib tests
	$(VENV)/bin/ruff format --check lib tests

test: lint
	$(PY) -m pytest -q

# Day-to-day: no notebook runs, no multi-process tests (a minute or two).
test-fast: install
	$(PY) -m pytest -q -m "not slow"

# One torch thread per run, as many runs as cores: the committed figures were made that
# way, and results depend on the thread count. ARGS passes options (--only, -j, --list...).
report: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m dynn.report $(ARGS)

clean-runs:
	rm -rf runs
