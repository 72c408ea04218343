# Developer entry points. `make test` is the whole suite (what CI runs); the
# other targets run one part of it. Each installs what it needs first.
SHELL := /bin/bash
RUN := tests/tools/run-tests.sh

.PHONY: help demo demo-clean test lint sanity unit molecule setup images images-rebuild changelog build clean bench bench-clean

help:            ## list the targets
	@grep -E '^[a-z-]+: +##' $(MAKEFILE_LIST) | sed -E 's/: +## /\t/' | expand -t 18

demo:            ## the demo: site.yml on a local systemd container, then a backup and restore drill
	playbooks/demo/demo.sh up

demo-clean:      ## remove the demo container and its repositories
	playbooks/demo/demo.sh down

test:            ## everything: lint, sanity, unit tests, every molecule scenario
	$(RUN)

lint:            ## shellcheck, mypy on plugins/, ansible-lint (production profile), changelog lint
	$(RUN) lint

sanity:          ## ansible-test sanity on a temporary ansible_collections/selfhost/backup copy
	$(RUN) sanity

unit:            ## pytest unit tests with coverage of plugins/
	$(RUN) unit

molecule:        ## one scenario with SCENARIO=<name>, else all of them
	MOLECULE_SCENARIO=$(SCENARIO) $(RUN) molecule

setup:           ## packages, virtualenv, Docker engine and test images
	tests/tools/setup-host.sh

images:          ## build missing systemd test images
	tests/tools/setup-host.sh images

images-rebuild:  ## rebuild the systemd test images
	tests/tools/setup-host.sh docker && tests/images/build-images.sh --rebuild

bench:           ## benchmarks (not part of `make test`): BENCH_SIZE_MB=300 BENCH_RUNS=3, see bench/README.md
	bench/bench.sh run

bench-clean:     ## remove the benchmark container and its repositories
	bench/bench.sh down

changelog:       ## lint the changelog fragments
	tests/tools/setup-host.sh venv && .venv/bin/antsibull-changelog lint

build:           ## build the collection tarball
	tests/tools/setup-host.sh venv && .venv/bin/ansible-galaxy collection build --force

clean:           ## remove caches and build outputs (keeps the venv and images)
	rm -rf .cache tests/output selfhost-backup-*.tar.gz .pytest_cache .coverage
