# ecrkit: `make run` (the embedded default) and `make test` (the whole suite, as CI runs it).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := .cache/stamps
# podman settings that work on these machines (runc, ulimits); see molecule/containers.conf.
export CONTAINERS_CONF := $(CURDIR)/molecule/containers.conf
export PATH := $(CURDIR)/$(BIN):$(PATH)

DEBIAN_PACKAGES := podman runc uidmap slirp4netns fuse-overlayfs debootstrap shellcheck amazon-ecr-credential-helper make \
	docker.io docker-registry openssl util-linux skopeo buildah time strace
SCENARIOS := $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help deps venv image image-trixie helpers cloudinit-image lint unit molecule test test-matrix run clean-hosts bench \
	standin standin-down dist ci-image

STANDIN := .cache/standin
# The test bed (testbed/: make run, the stand-in, the benchmarks) is imported from the checkout, never
# installed (the wheel holds ecrkit only); pytest finds it through pyproject's pythonpath.
run clean-hosts standin standin-down bench: export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

help:
	@echo "make run    stand-in for ECR, local hosts provisioned by site.yml, a real pull and ecrkit validate on each"
	@echo "            (KEEP=1 keeps the hosts and the stand-in up; make clean-hosts removes them)"
	@echo "make test   install what is missing, then lint, pytest and every Molecule scenario"
	@echo "make test-matrix   the oldest and the newest ansible-core meta/runtime.yml allows: sanity, the tests"
	@echo "            that exercise ansible-core and one Molecule scenario on each (docs/support.md)"
	@echo "make bench  converge, token, mirror and validate benchmarks (bench/README.md)"
	@echo "make standin / make standin-down   start / stop the local stand-in for AWS and ECR"
	@echo "make dist   the wheel (ecrkit) and the collection (ecrkit.ecr) into dist/"
	@echo "make ci-image   the image of the CI jobs (Containerfile, examples/gitlab-ci.yml) as \$$CI_IMAGE"
	@echo "            (default localhost/ecrkit:VERSION), FROM \$$CI_IMAGE_BASE (python:3.11-slim-bookworm)"

deps: $(STAMP)/deps
$(STAMP)/deps: Makefile
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p $(STAMP) && touch $@

venv: $(STAMP)/venv
$(STAMP)/venv: requirements.txt pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@mkdir -p $(STAMP)
	@# pip's output is kept for a failure only: this machine's pip config warns about every package.
	@$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt >$(STAMP)/pip.log 2>&1 || { cat $(STAMP)/pip.log; exit 1; }
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps -e . >$(STAMP)/pip.log 2>&1 || { cat $(STAMP)/pip.log; exit 1; }
	@touch $@

image: deps
	@tools/base-image.sh bookworm

# Debian 13 hosts (molecule/debian13) and the newest ansible-core's controller (tools/matrix.py).
image-trixie: deps
	@tools/base-image.sh trixie

# The helpers the tests run (0.6.0 bookworm, 0.7.1 trixie, sid's >= 0.12.0), fetched by apt with a
# private configuration into .cache/helpers/<suite>/; a suite already there is kept.
helpers: $(STAMP)/deps
	@tools/fetch-helpers.sh .cache/helpers

# Job hosts booted by cloud-init: an image derived from the base image.
cloudinit-image: image
	@tools/cloudinit-image.sh

# The host side (the probe and files modules, which the converge action runs on hosts) needs no newer Python.
HOST_PYTHON := 3.9
HOST_MODULES := plugins/modules/probe.py plugins/modules/files.py

lint: venv deps
	shellcheck tools/*.sh .ci/run
	vermin --quiet --no-tips --violations --target=$(HOST_PYTHON)- $(HOST_MODULES)
	ruff check ecrkit testbed plugins scripts tests bench molecule roles tools
	ruff format --check ecrkit testbed plugins scripts tests bench molecule roles tools
	mypy
	yamllint --strict .
	@# A HOME of its own: ansible-lint puts ~/.ansible/collections before the checkout, where any ecrkit.ecr
	@# installed there (an older one) would be linted instead of this one.
	@mkdir -p .cache/lint-home
	HOME=$(CURDIR)/.cache/lint-home ansible-lint --profile production
	python tools/role_docs.py --check
	antsibull-docs lint-collection-docs --plugin-docs .

unit: venv deps
	pytest -q -m "not hosts"

molecule: venv image image-trixie helpers
	@for s in $(SCENARIOS); do echo "== molecule test -s $$s"; molecule test -s $$s || exit 1; done

test: deps venv image helpers cloudinit-image lint
	pytest -q
	$(MAKE) --no-print-directory molecule

# ansible-core's oldest and newest releases that meta/runtime.yml allows (tools/matrix.py, docs/support.md).
test-matrix: deps venv image image-trixie
	python tools/matrix.py

run: deps venv image
	@python -m testbed $(if $(KEEP),--keep)

bench: deps venv image
	@python bench/converge.py
	@python bench/token_economy.py
	@python bench/mirror.py
	@python bench/validate.py

# What a user installs outside the checkout (README, "From your own project"): built without the
# development venv, by a small one of its own holding only ansible-core (for ansible-galaxy).
DIST_VENV := .cache/dist-venv
dist:
	@test -x $(DIST_VENV)/bin/python || python3 -m venv $(DIST_VENV)
	@# The tested versions of ansible-core and what it needs, pinned by requirements.txt.
	@$(DIST_VENV)/bin/pip install -q --disable-pip-version-check -c requirements.txt ansible-core >$(DIST_VENV)/pip.log 2>&1 \
	  || { cat $(DIST_VENV)/pip.log; exit 1; }
	@rm -rf dist && mkdir dist
	@$(DIST_VENV)/bin/pip wheel -q --no-deps --disable-pip-version-check -w dist . >$(DIST_VENV)/pip.log 2>&1 \
	  || { cat $(DIST_VENV)/pip.log; exit 1; }
	@$(DIST_VENV)/bin/ansible-galaxy collection build --output-path dist . >/dev/null
	@ls dist

# The image of the CI jobs (Containerfile): ecrkit, ansible-core and the collection, from what
# `make dist` builds. pip's downloads are made here, into .cache/ci-image/wheels (kept), and the build
# installs from them alone. CI_IMAGE_BASE: a Debian image whose python3 is CI_PYTHON (the wheels' version).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' ecrkit/__init__.py)
CI_IMAGE ?= localhost/ecrkit:$(VERSION)
CI_IMAGE_BASE ?= docker.io/library/python:3.11-slim-bookworm
CI_PYTHON ?= 3.11
CI_WHEELS := .cache/ci-image/wheels
ci-image: dist
	@mkdir -p $(CI_WHEELS)
	@$(DIST_VENV)/bin/pip download -q --disable-pip-version-check -d $(CI_WHEELS) -c requirements.txt \
	  --python-version $(CI_PYTHON) --only-binary=:all: \
	  dist/ecrkit-$(VERSION)-py3-none-any.whl ansible-core >$(DIST_VENV)/pip.log 2>&1 || { cat $(DIST_VENV)/pip.log; exit 1; }
	@podman build --quiet --file Containerfile --tag $(CI_IMAGE) --build-arg BASE=$(CI_IMAGE_BASE) \
	  --build-arg VERSION=$(VERSION) --build-arg PIP_OPTIONS="--no-index --find-links /wheels" \
	  --volume "$$(realpath $(CI_WHEELS))":/wheels:ro . >.cache/ci-image/build.log 2>&1 \
	  || { cat .cache/ci-image/build.log; exit 1; }
	@echo "$(CI_IMAGE): built FROM $(CI_IMAGE_BASE)"

clean-hosts:
	@python -m testbed --destroy

standin: deps venv
	@python -m testbed.standin up $(STANDIN)

standin-down: venv
	@python -m testbed.standin down $(STANDIN)
