# Set-up and entry points. `make train` and `make test` each do all the set-up they need and are idempotent.
SHELL := /bin/bash
comma := ,
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# Debian packages the renderers need: Chromium (web), LibreOffice Impress + its Python bridge (UNO, for
# the persistent deck converter) + poppler (slides), fonts, and libseccomp (the sandbox's syscall
# filter, through the pyseccomp binding).
APT_PACKAGES := chromium libreoffice-impress python3-uno poppler-utils fonts-dejavu-core libseccomp2
STAMP := $(VENV)/.installed
# The CPU set-up installs exact, hashed versions from requirements/cpu.txt (resolved by uv from the
# pyproject's ranges; `make lock` refreshes it). uv itself comes pinned and hashed from requirements/uv.txt.
LOCK := requirements/cpu.txt
UV := $(VENV)/bin/uv
# Where the CPU build of torch comes from: the wheel on this machine's disk where there is one, else
# PyTorch's CPU index (same file, same hash).
TORCH_SOURCE := $(if $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
EXTRAS := dev,trl,chartmimic
# Wait up to 10 minutes for another package install to let go of dpkg's lock instead of failing at
# once. apt (2.6 here) honours this for `install`, not for the package lists' lock of `update`:
# `system` waits for that one itself.
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

.PHONY: setup system train test test-latest lock bench lint clean

setup: $(STAMP) system

$(STAMP): pyproject.toml $(LOCK) requirements/uv.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
ifeq ($(HAS_GPU),)
	# Exactly what CI last passed with; `sync` also removes what the lock does not name.
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(TORCH_SOURCE) $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
else
	# A GPU machine keeps its CUDA build of torch: the pyproject's ranges, not the CPU lock.
	$(UV) pip install --quiet --python $(PY) -e '.[$(EXTRAS)]'
endif
	$(PY) -m vsdpo_kernels.cpu_build
	touch $@

# Refresh the lock: the newest versions the pyproject allows, torch held at the CPU build.
lock: requirements/uv.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	$(UV) pip compile pyproject.toml $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) \
		--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		$(TORCH_SOURCE) --constraint requirements/torch-cpu.txt --upgrade \
		--custom-compile-command 'make lock' -o $(LOCK)

# The suite against the newest versions the pyproject allows (a separate venv), so that a new release
# that breaks something shows up here first, as a choice to make, not as a red CI.
LATEST := .venv-latest
test-latest: system
	python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	$(LATEST)/bin/uv pip install --quiet --python $(LATEST)/bin/python --upgrade $(TORCH_SOURCE) \
		--constraint requirements/torch-cpu.txt -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python -m vsdpo_kernels.cpu_build
	$(LATEST)/bin/python -m pytest tests/ -q

system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v soffice >/dev/null 2>&1 || missing="$$missing libreoffice-impress"; \
	[ -f /usr/lib/python3/dist-packages/uno.py ] || missing="$$missing python3-uno"; \
	command -v pdftoppm >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$$missing libseccomp2"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		for attempt in $$(seq 60); do \
			log=$$($(APT_GET) update -qq 2>&1) && break; \
			if ! grep -q "Could not get lock" <<<"$$log" || [ $$attempt = 60 ]; then echo "$$log" >&2; exit 1; fi; \
			echo "waiting for the apt package lists lock (held by another install)"; sleep 10; \
		done; \
		$(APT_GET) install -y -qq --no-install-recommends $$missing; \
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
	rm -rf $(VENV) $(LATEST) build *.egg-info
