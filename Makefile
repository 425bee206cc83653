# The two commands: `make demo` runs the local demo, `make test` the whole suite.
# Both set up what they need first (scripts/setup.sh): Debian packages, .venv, the package.
.PHONY: demo test setup lint typecheck unit bench bench-load clean

BIN := .venv/bin
ARGS ?=
PYTEST_ARGS ?=

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/python -m xds.demo $(ARGS)

test: setup lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check xds tests benchmarks
	$(BIN)/ruff format --check xds tests benchmarks
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/snapshot_build.py
	$(BIN)/python benchmarks/zk_convergence.py
	$(BIN)/python benchmarks/kraft_convergence.py

# The ADS load cases (each a few minutes at most); ARGS go to every case, e.g. ARGS="--repo ../tree".
bench-load: setup
	@[ -x $(BIN)/py-spy ] || $(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/ads_load.py --clusters 3 --brokers 30 --streams 1000 $(ARGS)
	$(BIN)/python benchmarks/ads_load.py --clusters 3 --brokers 30 --streams 3000 $(ARGS)
	$(BIN)/python benchmarks/ads_load.py --clusters 10 --brokers 100 --streams 1000 --move-timeout 40 $(ARGS)

clean:
	rm -rf .venv .mypy_cache .pytest_cache .ruff_cache *.egg-info
