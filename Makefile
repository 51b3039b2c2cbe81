# Two entry points for a fresh machine: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test wheel-check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Index the bundled sample with the bundled demo model into the default index, then ask it something.
demo: setup
	$(BIN)/clipsearch index data/sample --model demo
	$(BIN)/clipsearch search "a red star" -k 3

test: setup
	$(BIN)/python -m pytest -n 2

# The package as a user installs it: sdist and wheel built, the wheel installed into a fresh venv and used from
# another folder (.ci/wheel_check.py; CI runs it after the tests).
wheel-check: setup
	$(BIN)/python .ci/wheel_check.py

clean:
	rm -rf $(VENV) .pytest_cache
