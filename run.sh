#!/usr/bin/env bash
# One entry point that does its own setup: a virtual environment in .venv with the project and its test tools.
#   bash run.sh up [flags]     the embedded default: local Chroma servers behind the gateway, SQLite log
#   bash run.sh test [args]    the whole test suite (starts its own Chroma servers and PostgreSQL)
#   bash run.sh bench [flags]  the benchmark against direct Chroma
#   bash run.sh lint           ruff (lint and format), mypy, and the import layers (lint-imports)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV=.venv

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e ".[local,test]"
        touch "$stamp"
    fi
}

browser() {
    # The dashboard test renders the page in headless Chromium (Debian's package).
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        fi
    fi
}

prometheus_tools() {
    # The Prometheus files' test checks the alert rules with promtool (Debian's prometheus package).
    if ! command -v promtool >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        fi
    fi
}

lint() {
    "$VENV/bin/ruff" check chroma_ha tests bench
    "$VENV/bin/ruff" format --check chroma_ha tests bench
    "$VENV/bin/python" -m mypy chroma_ha
    "$VENV/bin/lint-imports"
}

command="${1:-}"
shift || true
case "$command" in
    up) setup; exec "$VENV/bin/chroma-ha" up "$@" ;;
    test) setup; browser; prometheus_tools; exec "$VENV/bin/python" -m pytest "$@" ;;
    bench) setup; exec "$VENV/bin/chroma-ha" bench "$@" ;;
    lint) setup; lint ;;
    *) echo "usage: bash run.sh up|test|bench|lint [args]" >&2; exit 2 ;;
esac
