# The README's two commands. Both create .venv when missing, install from pyproject.toml when it changed, and
# are safe to run again.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip

# pip, not uv: the machines' pip is capped at the torch build that lies on their disk.
$(STAMP): pyproject.toml $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e ".[test,cluster]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/f2b-study demo

test: $(STAMP)
	$(VENV)/bin/ruff check f2b_study tests scripts benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check f2b_study tests scripts benchmarks
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
