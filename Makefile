# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck proto proto-check bench soak faults clean venv audit lock

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/posgw demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	sh scripts/install-chromium.sh  # the status page's browser test drives the distribution's chromium
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

bench: $(STAMP)
	$(PY) bench/core_bench.py
	$(PY) bench/core_bench.py --postgres
	$(PY) bench/core_bench.py --cluster
	$(PY) bench/gateway_bench.py
	$(PY) bench/drivers_bench.py
	$(PY) bench/overload_bench.py
	$(PY) bench/shop_bench.py
	$(PY) bench/sbis_bench.py

# Long runs, not in `make test`. soak: POSGW_SOAK_KILLS (1000), POSGW_SOAK_SEED, POSGW_SOAK_DURATION_S,
# POSGW_SOAK_RATE, POSGW_SOAK_VENDORS; faults: POSGW_FAULTS (comma-separated scenario names).
# Reports go to reports/ (generated, not committed).
soak: $(STAMP)
	$(PY) -m simulators.soak

faults: $(STAMP)
	$(PY) -m simulators.faults.catalogue

# Runtime dependencies pinned with hashes (pip-tools): scripts/install.sh installs from this file with
# pip --require-hashes. Regenerate after changing pyproject.toml's dependencies.
lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file=requirements.lock pyproject.toml

# Known vulnerabilities in the locked dependencies (needs the PyPI/OSV vulnerability service, which
# these build machines cannot reach: not part of `make test`).
audit: $(STAMP)
	$(VENV)/bin/pip-audit --strict --require-hashes --disable-pip -r requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
