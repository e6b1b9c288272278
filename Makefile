# dicomflow — `make up` to run everything locally, `make test` to run the test suite.
# Both create the virtual environment and install the pinned dependencies first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PACKAGES := common gateway ingest_service processor_service results_service single_host

.DEFAULT_GOAL := help
.PHONY: help venv preflight setup up test test-quick lint format bench drills clean
.PHONY: wheels base-image image k8s-smoke

help: ## Show this help.
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "dicomflow needs Python 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP) ## Create .venv and install the pinned dependencies.

preflight: venv ## Check that PostgreSQL and RabbitMQ answer.
	$(PY) -m single_host.preflight

setup: preflight ## Secrets (var/secrets, if not in the environment), database, migrations, broker topology, first admin.
	$(PY) -m common.app.secret_settings
	$(PY) -m results_service.migrate
	$(PY) -m common.messaging.broker
	$(PY) -m results_service.bootstrap_admin

up: setup ## Set up, then run every service in the foreground (Ctrl-C stops them all).
	$(PY) -m single_host.supervisor

# The portal's browser test drives Debian's Chromium through Playwright (its own browser download is unreachable).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "The portal's browser test needs Debian's chromium at $(CHROMIUM): run 'sudo apt-get install -y chromium'." >&2; exit 1; fi

# The alerting rules (k8s/prometheus) are checked and unit-tested with promtool, from Debian's prometheus package.
PROMTOOL := /usr/bin/promtool

$(PROMTOOL):
	@if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	else echo "The alerting rules' tests need promtool at $(PROMTOOL): run 'sudo apt-get install -y prometheus'." >&2; exit 1; fi

test: preflight $(CHROMIUM) $(PROMTOOL) ## Set up, then run the whole test suite against the local PostgreSQL and RabbitMQ.
	$(PY) -m pytest

test-quick: preflight ## Unit and app-level tests only: no service processes, no browser (tests/e2e left out).
	$(PY) -m pytest --ignore=tests/e2e

lint: venv ## ruff and mypy (strict) on the packages.
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: venv ## Format and auto-fix with ruff.
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# bench_pipeline measures Debian's Orthanc (a mature C++ DICOM server) in the same run as its accept-rate baseline.
# Each benchmark sets up the systems it runs itself (database, secrets, topology), so it needs only preflight.
ORTHANC ?= /usr/sbin/Orthanc

$(ORTHANC):
	@if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y orthanc; \
	else echo "The pipeline benchmark's baseline needs Debian's orthanc at $(ORTHANC): run 'sudo apt-get install -y orthanc'." >&2; exit 1; fi

bench: preflight $(ORTHANC) ## Run the benchmarks under bench/; their figures go into bench/README.md.
	ORTHANC=$(ORTHANC) $(PY) -m bench

# The drills start their own RabbitMQ node and PostgreSQL cluster on free ports (never the machine's shared ones).
drills: venv ## Fault drills on 500 files each (kill -9, broker and database restarts); figures into docs/reliability.md.
	$(PY) -m tests.drills

# The container image (Containerfile): one image for the four services, built with podman (or docker) from wheels
# made here beforehand, so the build itself downloads nothing (air-gapped sites copy build/wheels).
# BASE_IMAGE empty means the Containerfile's pinned python:3.11-slim-bookworm; where registries are unreachable,
# `make base-image` makes one from Debian's archive: make image BASE_IMAGE=localhost/dicomflow-base:bookworm
ENGINE ?= $(shell command -v podman || command -v docker)
# Read once (`:=`): a commit landing during a build must not change the tag between `image` and `k8s-smoke`.
ifndef VERSION
VERSION := $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
endif
IMAGE ?= localhost/dicomflow:$(VERSION)
BASE_IMAGE ?=
DICOMFLOW_BASE ?= localhost/dicomflow-base:bookworm
# podman's default isolation needs a working OCI runtime; chroot isolation builds anywhere podman runs.
BUILD_FLAGS ?= $(if $(findstring podman,$(notdir $(ENGINE))),--isolation chroot)
WHEELS := build/wheels/.stamp

$(WHEELS): requirements.lock pyproject.toml | $(STAMP)
	@mkdir -p build
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > build/requirements-runtime.txt
	rm -rf build/wheels
	$(PY) -m pip wheel --quiet --disable-pip-version-check -r build/requirements-runtime.txt -c requirements.lock -w build/wheels
	@touch $@

wheels: $(WHEELS) ## Wheels of the runtime dependencies (pinned by requirements.lock) into build/wheels, for the image.

base-image: ## A python3.11 base image from Debian's archive (debootstrap, root): for sites that cannot pull one.
	image/base-image.sh $(DICOMFLOW_BASE)

image: $(WHEELS) ## Build the services' image (IMAGE=localhost/dicomflow:<commit>) with podman or docker (BASE_IMAGE=... to change the base).
	@test -n "$(ENGINE)" || { echo "make image needs podman or docker" >&2; exit 1; }
	$(ENGINE) build $(BUILD_FLAGS) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		--build-arg VERSION=$(VERSION) -t $(IMAGE) -f Containerfile .

# Not part of `make test`: it builds the image, then runs k8s/overlays/local's Jobs and Deployments from it, each
# container chrooted into the mounted image, on a database and AMQP prefix of its own.
k8s-smoke: image ## Build the image, run the local overlay's workloads from it and push 102 files through.
	$(PY) -m tests.k8s_smoke --image $(IMAGE) --engine $(ENGINE)

clean: ## Remove the virtual environment, caches and local data.
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var bench/out *.egg-info
