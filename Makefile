# Set-up and entry points. `make train` and `make test` each do all the set-up they need and are idempotent.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# Debian packages the renderers need: Chromium (web), LibreOffice Impress + poppler (slides), fonts.
APT_PACKAGES := chromium libreoffice-impress poppler-utils fonts-dejavu-core
STAMP := $(VENV)/.installed

.PHONY: setup system train test bench lint clean

setup: $(STAMP) system

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(HAS_GPU),)
	# The CPU build of torch; a plain `torch` requirement would pull a CUDA build of several GB.
	$(PY) -m pip install --quiet torch==2.13.0
endif
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m vsdpo_kernels.cpu_build
	touch $@

system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v soffice >/dev/null 2>&1 || missing="$$missing libreoffice-impress"; \
	command -v pdftoppm >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

train: setup
	$(PY) -m vsdpo.train

test: setup
	$(PY) -m pytest tests/ -q

bench: setup
	$(PY) -m pytest bench/ -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
