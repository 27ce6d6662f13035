# The Cloud — developer entry points. See README.md.
SWIFT ?= swift
DATA_DIR ?= ./cloud-data

.PHONY: test-slow deps build release run test unit-test integration-test bench bench-control clean api-docs

deps:
	bash scripts/install-deps.sh

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

# Build (release) and start `cloud dev` in the foreground: S3 on 127.0.0.1:9000, the control API on
# 127.0.0.1:8080, state in ./cloud-data.
run: deps release
	.build/release/cloud dev --data-dir $(DATA_DIR)

# The whole test suite: Swift unit tests, then the integration tests that drive the real server
# with aws-cli, boto3, rclone and s3cmd.
test: deps
	$(SWIFT) build --build-tests
	scripts/with-postgres.sh $(MAKE) unit-test integration-test

# ClusterRPCTests run on their own: they check deadlines and connection handling with real sockets,
# which the rest of the suite running in parallel on 2 cores can starve.
unit-test:
	timeout -s KILL 900 $(SWIFT) test --skip-build --skip ClusterRPCTests
	timeout -s KILL 300 $(SWIFT) test --skip-build --filter ClusterRPCTests

integration-test:
	timeout -s KILL 1800 python3 -m pytest tests/integration -q -p no:cacheprovider

# Slow tests kept out of `make test` and CI (they download from the Debian mirror): tests/slow.
test-slow: deps
	$(SWIFT) build --build-tests
	scripts/with-postgres.sh python3 -m pytest tests/slow -q -s -p no:cacheprovider

# docs/api.md, the API reference, from the route table (CLITests fails when it is out of date).
api-docs:
	$(SWIFT) build --product cloud
	.build/debug/cloud openapi --markdown > docs/api.md

bench: deps release
	python3 bench/run.py

# The control plane's API under load on SQLite and on a throwaway PostgreSQL (see docs/benchmarks.md).
bench-control: deps release
	scripts/with-postgres.sh python3 bench/control.py

clean:
	rm -rf .build
