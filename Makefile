# Steward. `make help` lists the targets.
.DEFAULT_GOAL := help
GO ?= go

.PHONY: help demo test test-short lint migrate bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo: ## start the demo on the embedded store (same as go run ./cmd/steward demo)
	$(GO) run ./cmd/steward demo

test: ## the whole suite with -race, on SQLite and PostgreSQL (see .ci/test)
	bash .ci/test

test-short: ## fast tests only: no PostgreSQL, no binary builds
	$(GO) test -short ./...

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

migrate: ## apply migrations (STEWARD_DATABASE_URL or STEWARD_DATA_DIR)
	$(GO) run ./cmd/steward migrate

bench: ## store benchmarks on both backends (needs DATABASE_URL for PostgreSQL)
	$(GO) test -run '^$$' -bench . -benchmem ./broker/store/...
