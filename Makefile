# Vectorizer: two commands on a fresh machine (python3, Java 17, Maven on PATH):
#   make up     # venv + install + local Kafka broker + server on 127.0.0.1
#   make test   # the whole suite against the real broker and a real Postgres
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up down test install lint bench bench-recovery bench-fastpath bench-10m reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	@echo "the vectorizer command is $(BIN)/vectorizer: 'source $(BIN)/activate' in another shell puts it on PATH"
	$(BIN)/vectorizer up

down: $(STAMP)
	$(BIN)/vectorizer down

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy vectorizer schemas producers consumers projections infra tests
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/vectorizer bench

# kill -9 right after a bulk load through qdrant-client, restart to correct answers (docs/benchmarks.md).
bench-recovery: $(STAMP)
	$(BIN)/python -m benchmarks.recovery --n 1000000 --dim 128

# The client's fast path (issue 21): qdrant-client over REST and gRPC against hnswlib alone, 100K then 1M
# (every ingest mode at 100K, the batch upsert at 1M), then docs/benchmarks.md.
bench-fastpath: $(STAMP)
	$(BIN)/python -m benchmarks.fastpath --n 100000 --dim 128 --grpc
	$(BIN)/python -m benchmarks.fastpath --n 1000000 --dim 128 --grpc
	$(BIN)/python -m benchmarks.report

# 10M x 128 in one collection (about 20 GB of RAM at its peak, hours on two cores; not in CI).
bench-10m: $(STAMP)
	$(BIN)/python -m benchmarks.recovery --n 10000000 --dim 128

# The whole suite, then docs/reliability.md from the figures its fault tests recorded.
reliability: $(STAMP)
	VECTORIZER_RELIABILITY_JSON=build/reliability.json $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m tests.reliability build/reliability.json docs/reliability.md

clean:
	rm -rf $(VENV) .pytest_cache
