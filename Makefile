# fsapps — the two set-up commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
PYTEST_ARGS ?=
# Where the tests find PostgreSQL; each run creates and drops its own database there.
DEFAULT_DATABASE_URL := postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: test test-switch demo bench bench-switch lint typecheck system venv clean

# Quiet by default: each step says one line, a tool's output is shown only when it fails.
# make V=1 ... echoes the recipes and shows everything.
V ?=
ifeq ($(V),)
.SILENT:
endif
# `quietly cmd args...` in a recipe: cmd's output goes to a scratch log that is printed (with the
# command) only when cmd fails; with V=1 cmd runs as it is.
define QUIETLY
quietly() {
  if [ -n "$(V)" ]; then "$$@"; return; fi
  local log status=0; log=$$(mktemp)
  "$$@" >"$$log" 2>&1 || status=$$?
  if [ "$$status" != 0 ]; then echo "failed ($$status): $$*" >&2; cat "$$log" >&2; fi
  rm -f "$$log"; return "$$status"
}
endef

# Both tiers: fakefs, and the real FreeSWITCH tier (tests/switch) when a FreeSWITCH with
# mod_python3 is at $$FS_PREFIX (default /usr/local/freeswitch) and sipp is installed; otherwise
# that tier is skipped with one line saying what is missing.
test: system venv
	$(ENSURE_POSTGRES)
	$(PY) -m pytest $(PYTEST_ARGS)

# Only the real-switch tier; fails (not skips) when FreeSWITCH, mod_python3 or sipp is missing.
test-switch: system venv
	$(ENSURE_POSTGRES)
	FSAPPS_REQUIRE_SWITCH=1 $(PY) -m pytest tests/switch $(PYTEST_ARGS)

# A simulated call center on fake FreeSWITCH nodes: make demo DEMO_ARGS="--duration 120 --rate 2"
DEMO_ARGS ?=
demo: system venv
	$(ENSURE_POSTGRES)
	$(PY) -m tools.demo $(DEMO_ARGS)

# Routing performance table: make bench BENCH_ARGS="--calls 5000 --rate 150"
BENCH_ARGS ?=
bench: system venv
	$(ENSURE_POSTGRES)
	$(PY) -m tools.bench $(BENCH_ARGS)

# fsapps against mod_callcenter and a plain bridge in a real FreeSWITCH, SIPp agents and callers
# (needs the FreeSWITCH of the real-switch tier and sipp; says in one line what is missing):
# make bench-switch BENCH_SWITCH_ARGS="--runs 100x10 --acd fsapps,callcenter --arrivals 60"
# Then how many browser agents (WebSocket registrations, Chromium consoles in calls) one node
# holds (docs/webrtc.md): BENCH_WEBRTC_ARGS="--registrations 500,1000,2000 --calls 4"
BENCH_SWITCH_ARGS ?=
BENCH_WEBRTC_ARGS ?=
bench-switch: system venv
	$(ENSURE_POSTGRES)
	$(PY) -m tools.benchswitch $(BENCH_SWITCH_ARGS)
	$(PY) -m tools.benchwebrtc $(BENCH_WEBRTC_ARGS)

# ruff reads no setup.cfg: its [ruff] section there is passed on as --config options.
lint: venv
	mapfile -t args < <($(PY) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print("\n".join(f"--{k}={v}" if k in ("select", "ignore") else f"--config={k}={v}" for k, v in c["ruff"].items()))')
	$(VENV)/bin/ruff check "$${args[@]}" fsapps fakefs tools tests

typecheck: venv
	$(VENV)/bin/mypy fsapps fakefs tools

# Make sure a PostgreSQL server answers at $$DATABASE_URL (default: the local server on
# 127.0.0.1:5432 as postgres). A stopped local cluster is started; a fresh Debian install that
# refuses the TCP login gets a superuser role for the current OS user and is reached through
# its Unix socket instead.
define ENSURE_POSTGRES
export DATABASE_URL="$${DATABASE_URL:-$(DEFAULT_DATABASE_URL)}"
if ! pg_isready -q -h 127.0.0.1 -p 5432 && [ -d /etc/postgresql ]; then
  version=$$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting the local PostgreSQL $$version cluster"
  $(SUDO) pg_ctlcluster --skip-systemctl-redirect "$$version" main start || true
  for _ in $$(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
if ! psql "$$DATABASE_URL" -qAtc 'select 1' >/dev/null 2>&1; then
  if [ "$$DATABASE_URL" = "$(DEFAULT_DATABASE_URL)" ]; then
    me=$$(id -un)
    $(SUDO) runuser -u postgres -- psql -qc "DO \$$\$$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$$me') THEN CREATE ROLE \"$$me\" SUPERUSER LOGIN; END IF; END\$$\$$" >/dev/null
    export DATABASE_URL="postgresql:///postgres"
  fi
  psql "$$DATABASE_URL" -qAtc 'select 1' >/dev/null || { echo "PostgreSQL is not reachable at $$DATABASE_URL" >&2; exit 1; }
fi
echo "PostgreSQL: ready"
endef

# System packages: python3-venv, redis-server, a PostgreSQL server, nats-server (for the NATS
# tests) and chromium (for the browser tests), from apt when missing. RabbitMQ is optional: the
# AMQP tests skip when none answers.
system:
	missing=()
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
	command -v psql >/dev/null || missing+=(postgresql-client)
	command -v nats-server >/dev/null || missing+=(nats-server)
	# make bench drives the CTI server with wrk too (a load generator cheaper than the server)
	command -v wrk >/dev/null || missing+=(wrk)
	# the browser tests drive the system Chromium (never `playwright install`); a CJK font so
	# the Chinese pages render in it
	[ -x /usr/bin/chromium ] || missing+=(chromium)
	# npm builds the agent console's browser phone (JsSIP) in `make venv`
	command -v npm >/dev/null || missing+=(npm)
	fc-list : family 2>/dev/null | grep -i 'wenquanyi\|noto sans cjk' >/dev/null || missing+=(fonts-wqy-microhei)
	if [ $${#missing[@]} -gt 0 ]; then
	  echo "system packages: installing $${missing[*]}"
	  $(QUIETLY)
	  quietly $(APT) update -qq
	  quietly $(APT) install -y -qq "$${missing[@]}"
	fi
	echo "system packages: ok"

venv: $(VENV)/.installed build/web/jssip.min.js
	echo "venv: ready ($(VENV))"

# The agent console's browser phone (docs/webrtc.md): JsSIP from the npm registry, bundled for
# the page by esbuild (package.json; node_modules/ and build/ are never committed). Without
# npm the console has no browser phone and its tests skip.
build/web/jssip.min.js: package.json package-lock.json
	if ! command -v npm >/dev/null; then echo "web: npm missing (make system installs it): no browser phone"; exit 0; fi
	echo "web: npm ci, bundling JsSIP into $@"
	$(QUIETLY)
	quietly npm ci --no-audit --no-fund
	quietly npm run build

$(VENV)/.installed: setup.cfg setup.py
	echo "venv: installing fsapps and its test tools into $(VENV)"
	$(QUIETLY)
	[ -x $(PY) ] || quietly python3 -m venv $(VENV)
	quietly $(PY) -m pip install -q --upgrade pip
	quietly $(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
