#!/usr/bin/env bash
# Tools the test suite needs beyond the Python packages of pyproject.toml:
#   promtool (Debian's `prometheus` package): tests/integration/test_deploy.py checks the
#   Prometheus configs, every dashboard expression and the alerting rules
#   (`promtool check rules`, `promtool test rules`) with it.
# (The Kubernetes manifests are validated by the PyPI package kubernetes-validate, which
# bundles the schemas and needs no network: it is in pyproject.toml's dev extra, which
# `make test` installs.)
#   openssl (Debian's `openssl` package): tests/integration/test_kafka_security.py makes
#   the CA and certificates of its TLS tests with it.
#   chromium and chromedriver (Debian's `chromium` and `chromium-driver` packages): the
#   headless browser of the web-page tests (the `browser` fixture of
#   tests/integration/conftest.py drives it with selenium, from the dev extra). Debian's
#   pair always match each other and install in seconds; Playwright's own browser needs a
#   download from its CDN at install time, which a locked-down CI machine may not reach.
# Idempotent and never interactive: as root it installs with apt-get, otherwise only
# through password-less sudo. `make test` runs it; outside CI a machine where it cannot
# install still runs the suite, and the tests that need the tool skip with a how-to (in
# CI, with CI set, they fail instead).
#   gcc and Python's headers (Debian's `gcc`, `libc6-dev` and `python3-dev`): the build
#   compiles the scoring core (setup.py); without them it installs the core as Python,
#   and the suite's check that the core runs compiled fails in CI.
set -euo pipefail

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null \
  || missing+=(python3-dev)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
versions() {
  promtool --version 2>&1 | head -n 1
  openssl version
  chromedriver --version
}
if [ ${#missing[@]} -eq 0 ]; then
  versions
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: ${missing[*]} missing and no apt-get here: install them yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! sudo -n true 2>/dev/null; then
    echo "install-tools: ${missing[*]} missing: run 'sudo apt-get install ${missing[*]}' once" >&2
    exit 1
  fi
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
versions
