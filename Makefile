# The README's two commands: `make run` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-deps run test test-unit bench lock audit dist

LOCK := requirements/test.lock

# Every dependency (build backend included) is installed from the lock, each file checked against its
# sha256; then the project itself, with nothing more resolved. `make lock` regenerates the lock.
$(STAMP): pyproject.toml constraints.txt $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

lock:
	test -x .venv-audit/bin/pip-compile || (python3 -m venv .venv-audit && .venv-audit/bin/pip install -q pip-tools)
	.venv-audit/bin/pip-compile -q --generate-hashes --allow-unsafe --all-build-deps --extra test \
		-c constraints.txt --strip-extras --no-emit-index-url -o $(LOCK) pyproject.toml

# The wheel and the sdist in dist/, checked by twine (in a venv of their own: neither is a dependency).
dist:
	test -x .venv-dist/bin/twine || (python3 -m venv .venv-dist && .venv-dist/bin/pip install -q build twine)
	rm -rf dist
	.venv-dist/bin/python -m build --outdir dist .
	.venv-dist/bin/twine check --strict dist/*

# Exit 0 clean, 1 vulnerable, 3 the database was unreachable (said plainly; never a false "no vulnerabilities").
audit:
	python3 scripts/audit.py

system-deps:
	@scripts/install-system-deps

install: $(STAMP) system-deps

# The quotes demo (examples/quotes) with its pools and, when PostgreSQL is installed, a primary and three
# replicas; `make run APP=mod:app JOBS=mod` runs yours instead, `make run APP=` the built-in app alone.
run: install
	$(PY) scripts/run-demo $(if $(filter command,$(origin APP)),--app '$(APP)') $(if $(filter command,$(origin JOBS)),--jobs '$(JOBS)')

# The audit runs first and reports (findings, or plainly that its database was unreachable); it never
# stops the tests: a vulnerability published today must not turn every CI run red. `make audit` fails on findings.
# Three test processes on two cores: most of the suite waits on real services, not on the CPU. A file stays on
# one process (--dist loadfile), so its module fixtures start once. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 3
test: install
	-python3 scripts/audit.py
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The tests that start no service: pure logic, the settings, the docs, the import contracts.
test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

BENCH_ARGS ?=
bench: install
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt arq
	$(PY) scripts/bench/run_all.py $(BENCH_ARGS)
