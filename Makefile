# Two commands on a fresh machine: `make results` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv results test test-slow bench clean

venv: $(STAMP)

# Reinstall only when requirements.txt or pyproject.toml changed.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m ipykernel install --user --name llc-interpretability --display-name "llc-interpretability (.venv)" >/dev/null
	touch $(STAMP)

results: venv
	$(PY) -m studies.main

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

bench: venv
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV)
