# The Cloud — developer entry points. See README.md.
SWIFT ?= swift
DATA_DIR ?= ./cloud-data

.PHONY: deps build release run test unit-test integration-test bench clean api-docs

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

unit-test:
	timeout -s KILL 900 $(SWIFT) test --skip-build

integration-test:
	timeout -s KILL 1800 python3 -m pytest tests/integration -q -p no:cacheprovider

# docs/api.md, the API reference, from the route table (CLITests fails when it is out of date).
api-docs:
	$(SWIFT) build --product cloud
	.build/debug/cloud openapi --markdown > docs/api.md

bench: deps release
	python3 bench/run.py

clean:
	rm -rf .build
