# The README's two commands: `make run` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-deps run test bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

system-deps:
	@scripts/install-system-deps

install: $(STAMP) system-deps

run: install
	$(VENV)/bin/cluster start

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

BENCH_ARGS ?=
bench: install
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt arq
	$(PY) scripts/bench/run_all.py $(BENCH_ARGS)
