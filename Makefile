# cxpulse: `make demo` runs the main job on the embedded default, `make test` the suite.
# Both create ./.venv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The scoring core and the rules compiled (setup.py; docs/architecture.md, "The compiled
# core"): installing compiles them, and `make native` again whenever a source they were
# built from is newer than the record of the build (every target that runs them depends on
# it). An older compiled build is never run: cxpulse/native.py runs the Python modules
# then, with a warning. CXPULSE_PURE=1 builds and runs them as Python (no C compiler).
NATIVE := cxpulse/native.json
NATIVE_SOURCES := $(shell $(PYTHON) cxpulse/native.py) cxpulse/native.py setup.py
PYTEST_ARGS ?=
# make test runs the suite in two processes (pytest-xdist), each test file whole in one
# of them: most tests wait on a worker, a broker or ClickHouse, so two keep both cores busy.
# TEST_JOBS=0 runs it in one process.
TEST_JOBS ?= 2
XDIST := $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

.PHONY: FORCE install native tools demo test test-fast lint format bench voc schema chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cxpulse needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[worker,dev]'
	@touch $(STAMP)

install: $(STAMP) $(NATIVE)

native: $(NATIVE)

# Built again without a newer source when `cxpulse/native.py --rebuild` says why: the last
# build could not compile (no C compiler then), or it is stale (a compiled module deleted).
$(NATIVE): $(NATIVE_SOURCES) $(if $(shell $(PYTHON) cxpulse/native.py --rebuild),FORCE) | $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

FORCE:

demo: $(STAMP) $(NATIVE)
	$(VENV)/bin/cxpulse demo

# Tools beyond Python packages (promtool, for the deploy checks). Outside CI a machine
# where they cannot be installed still runs the suite: those tests skip with a how-to.
tools:
	@bash .ci/install-tools.sh || { [ -z "$$CI" ] && echo "tools: not installed; the tests that need them will skip"; }

# The whole suite: lint, type check, then every test (real broker, real chDB, and the
# ClickHouse server named by CXPULSE_TEST_CLICKHOUSE_URL). pytest's exit code 5 (no tests
# collected) is a failure here, never a pass.
test: $(STAMP) tools $(NATIVE) lint
	@$(PY) -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: $(STAMP) $(NATIVE)
	$(PY) -m pytest tests/unit tests/agents $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The `bench` extra (the Quix Streams peer of the pipeline benchmark) goes into a venv of
# its own: quixstreams pins pydantic below the version the project's venv may have, and
# the benchmark must measure cxpulse with the dependencies its tests use.
PEER_VENV ?= .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed-stamp
BENCH_EXTRA = $(PY) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))'

$(PEER_STAMP): pyproject.toml $(STAMP)
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet $$($(BENCH_EXTRA))
	@touch $(PEER_STAMP)

# Benchmarks print figures as ratios against a baseline measured in the same run.
bench: $(STAMP) $(NATIVE) $(PEER_STAMP)
	$(PY) -m pytest -p no:cacheprovider -o python_files='bench_*.py' tests/benchmarks --benchmark-only --benchmark-columns=median,ops,rounds -q
	$(PY) -m tests.benchmarks.pipeline --peer-python $(PEER_VENV)/bin/python
	$(PY) -m tests.benchmarks.ingest
	$(PY) -m tests.benchmarks.voc

# Feedback text on the labelled set (tests/data): polarity accuracy and macro-F1 of each
# sentiment analyser, topic precision and recall, the memory each analyser adds
# (docs/scoring.md, "Feedback text").
voc: $(STAMP)
	$(PY) -m tests.benchmarks.voc

# Chaos suite: workers restarted 30 times and killed with SIGKILL while input arrives, on
# the bundled broker (loopback) and chDB; prints a table, fails on any loss or duplicate.
# Takes many minutes (bounded at 75); CHAOS_ARGS=--short for the CI form (docs/operations.md).
CHAOS_ARGS ?=
# The chaos suite's broker-restart scenario keeps the bundled broker's data in a local S3
# server (moto), installed into a venv of its own so the project's venv stays as tested.
CHAOS_VENV ?= .venv-chaos
CHAOS_STAMP := $(CHAOS_VENV)/.installed-stamp

$(CHAOS_STAMP):
	$(PYTHON) -m venv $(CHAOS_VENV)
	$(CHAOS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHAOS_VENV)/bin/python -m pip install --quiet 'moto[server]>=5'
	@touch $(CHAOS_STAMP)

chaos: $(STAMP) $(NATIVE) $(CHAOS_STAMP)
	CXPULSE_CHAOS_MOTO_SERVER=$(CHAOS_VENV)/bin/moto_server timeout 4500 $(PY) -m tests.chaos $(CHAOS_ARGS)

schema: $(STAMP)
	$(PY) -m cxpulse.schemas.export

clean:
	rm -rf $(VENV) $(PEER_VENV) $(CHAOS_VENV) var .mypy_cache .ruff_cache .pytest_cache build $(NATIVE)
	find streams cxpulse -name '*.so' -delete
