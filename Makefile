# Two entry points a newcomer needs (see README.md); both install what they need into .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test report clean-runs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

report: install
	$(PY) -m dynn.report $(ARGS)

clean-runs:
	rm -rf runs
