# Two commands for a new user: `make run` (the main job on the embedded sample) and `make test`.
# Both share one idempotent install step that is skipped while its inputs are unchanged.

SHELL := /bin/bash
VENV ?= .venv
# The generation server's own venv (vLLM's CPU build here; VLLM_PACKAGE=vllm for CUDA), reached over HTTP only.
VLLM_VENV ?= .venv-vllm
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
LMFORGE := $(VENV)/bin/lmforge
# Re-install only when what the install depends on changes.
INSTALL_HASH := $(shell cat pyproject.toml constraints.txt scripts/install_lid_model.sh scripts/install_vllm.sh 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(INSTALL_HASH)
DEBIAN_DOCS := debian-reference-en debian-reference-fr debian-reference-de debian-reference-it \
	debian-reference-ja debian-reference-es debian-reference-pt debian-reference-zh-cn \
	debian-handbook python3-doc

# Offline by design: no hub downloads, no analytics (DESIGN §8).
export HF_HUB_OFFLINE := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false

PREFECT_PORT ?= 4200
INBOX ?= $(CURDIR)/inbox
LAKE ?= $(CURDIR)/lake

.PHONY: run test install sample-packages serve clean

run: install sample-packages
	$(LMFORGE) run

# The suite on up to 4 processes (pytest-xdist), without the tests marked slow (whole stages killed
# and resumed, Ray clusters); `make test SLOW=1` runs those too, as CI does (.ci/run). The tests that
# generate share one vLLM server across the processes (tests/conftest.py: generation_server).
test: install sample-packages
	$(PY) -m pytest -q -n auto --maxprocesses 4 $(if $(SLOW),,-m "not slow")

install: $(STAMP)

$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -c constraints.txt -e '.[dev,ray]'
	bash scripts/install_lid_model.sh $(VENV)
	bash scripts/install_vllm.sh $(VLLM_VENV)
	@rm -f $(VENV)/.installed-* && touch $@

# The sample corpus is real multilingual HTML from Debian's documentation packages.
sample-packages:
	@missing=$$(for p in $(DEBIAN_DOCS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing the sample corpus packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ] || ! ( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null ); then \
	    echo "warning: could not install $$missing (needs apt and root)."; \
	    echo "         'lmforge run' needs them for its sample corpus; 'lmforge sample FOLDER' packs any folder of HTML instead."; \
	  fi; \
	fi

# Scheduled mode: a local Prefect server, a `process` work pool, the deployments of prefect.yaml
# and a worker. Stop with Ctrl-C.
serve: install
	export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api; \
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) & server=$$!; \
	trap "kill $$server" EXIT; \
	for i in $$(seq 60); do curl -sf $$PREFECT_API_URL/health >/dev/null && break; sleep 1; done; \
	curl -sf $$PREFECT_API_URL/health >/dev/null || { echo "the Prefect server is not healthy after 60 s" >&2; exit 1; }; \
	echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)"; \
	$(VENV)/bin/prefect work-pool create process --type process --overwrite >/dev/null || exit 1; \
	mkdir -p $(INBOX); \
	LMFORGE_HOME=$(CURDIR) INBOX=$(INBOX) LMFORGE_LAKE=$(LAKE) $(VENV)/bin/prefect --no-prompt deploy --all || exit 1; \
	echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT) (the worker runs the deployments' flows; Ctrl-C stops all)"; \
	$(VENV)/bin/prefect worker start --pool process

clean:
	rm -rf lake .pytest_cache
