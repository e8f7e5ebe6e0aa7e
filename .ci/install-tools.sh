#!/usr/bin/env bash
# Tools the test suite needs beyond the Python packages of pyproject.toml:
#   promtool (Debian's `prometheus` package): tests/integration/test_deploy.py checks the
#   Prometheus config and every dashboard expression with it.
# Idempotent; run as root or with sudo. Locally the tests skip with this how-to when a
# tool is missing; in CI (CI set) they fail instead.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1
