# `make run` and `make test` do all the set-up on a fresh machine, then run.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
# Debian packages the tests need: sshd and sudo for the loopback SSH fleet, git for self-update,
# chromium for the browser test of the web chat page (driven by Playwright, no browser download)
# and an emoji font so that its screenshots show the reactions; systemd for systemd-analyze,
# which verifies deploy/systemd/troupe@.service.
DEBS    := openssh-server sudo git chromium fonts-noto-color-emoji systemd

.PHONY: run test lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages ($$missing); run as root or install them"; fi; \
	fi

# The sandbox: localslack and its web chat page, three replicas, a fleet; Ctrl-C stops it all.
run: $(STAMP)
	$(BIN)/troupe sandbox

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) system-deps lint
	$(BIN)/pytest

bench: $(STAMP) system-deps
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/localslack_bench.py
	$(BIN)/python benchmarks/rollout_vs_ansible.py
	$(BIN)/python benchmarks/claim_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
