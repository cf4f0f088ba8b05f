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

# One torch thread by default: the committed figures were made that way, results depend
# on the thread count, and it is the fastest setting when anything else shares the CPU.
report: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m dynn.report $(ARGS)

clean-runs:
	rm -rf runs
