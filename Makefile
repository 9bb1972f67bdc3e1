# Set-up and entry points. `make train` and `make test` each do all the set-up they need and are idempotent.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# Debian packages the renderers need: Chromium (web), LibreOffice Impress + poppler (slides), fonts,
# and libseccomp (the sandbox's syscall filter, through the pyseccomp binding).
APT_PACKAGES := chromium libreoffice-impress poppler-utils fonts-dejavu-core libseccomp2
STAMP := $(VENV)/.installed
# Wait up to 10 minutes for another package install to let go of dpkg's lock instead of failing at
# once. apt (2.6 here) honours this for `install`, not for the package lists' lock of `update`:
# `system` waits for that one itself.
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

.PHONY: setup system train test bench lint clean

setup: $(STAMP) system

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(HAS_GPU),)
	# The CPU build of torch; a plain `torch` requirement would pull a CUDA build of several GB.
	$(PY) -m pip install --quiet torch==2.13.0
endif
	$(PY) -m pip install --quiet -e '.[dev,trl,chartmimic]'
	$(PY) -m vsdpo_kernels.cpu_build
	touch $@

system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v soffice >/dev/null 2>&1 || missing="$$missing libreoffice-impress"; \
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
	rm -rf $(VENV) build *.egg-info
