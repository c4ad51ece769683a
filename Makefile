# Two entry points: `make run` (the main job) and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench venv leaderboard

venv: $(STAMP)

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 first: the CPU build on local disk (a bare "torch" would pull CUDA).
	$(BIN)/pip install --quiet -r requirements.txt
	# crabnet 2.0.8 declares python<3.11 but works on 3.11.
	$(BIN)/pip install --quiet --ignore-requires-python crabnet==2.0.8
	# this project itself (editable): `import harness` and the `kspacing` command from any directory
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The domain profile and groups file of the benchmark run trains on, when missing (online: the
# official benchmark's; the offline subset's are committed): predict's domain check and per-group bound.
run: $(STAMP)
	$(BIN)/python -m modellib.studies.domain_profile --missing-only
	$(BIN)/python -m harness run --all

# The timing benchmarks (tests/perf, modellib/tests/perf) run in `make bench` only.
test: $(STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/perf --ignore=modellib/tests/perf

bench: $(STAMP)
	$(BIN)/python -m pytest -q tests/perf modellib/tests/perf --benchmark-enable --benchmark-only

leaderboard: $(STAMP)
	$(BIN)/python -m harness leaderboard
