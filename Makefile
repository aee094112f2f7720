# The two set-up commands are `make run` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: run test lint types imports contracts pytest bench-migrate clean bench-relay bench-sagas bench-webhooks

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/payment-gateway dev --demo

test: $(STAMP) lint types imports pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
pytest: $(STAMP)
	@$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench-relay: $(STAMP)
	$(BIN)/python -m bench.relay

bench-sagas: $(STAMP)
	$(BIN)/python -m bench.sagas

bench-webhooks: $(STAMP)
	$(BIN)/python -m bench.webhooks

bench-migrate: $(STAMP)
	$(BIN)/python -m bench.migrate_all

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache

contracts: $(STAMP)
	$(BIN)/python -m schemas.export
	$(BIN)/python -m gateway.openapi --write
