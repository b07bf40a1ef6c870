#!/usr/bin/env bash
# `make test`: start PostgreSQL and Kafka where this machine can (Debian packages, Java + Maven),
# run every test against them, stop what it started. Without them, their tests skip with a message;
# with REQUIRE_INFRA=1 (CI) a missing piece fails the run instead.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
source scripts/started.sh

missing() {
  echo "make test: $1 not available ($2); its tests will be skipped" >&2
  if [ "${REQUIRE_INFRA:-0}" = "1" ]; then echo "make test: REQUIRE_INFRA=1, failing" >&2; exit 1; fi
}

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if infra/postgres/pg.sh up; then
    started+=(pg)
    TEST_DATABASE_URL="$(infra/postgres/pg.sh url)"
    export TEST_DATABASE_URL
  else
    missing PostgreSQL "install the postgresql Debian package, or set TEST_DATABASE_URL"
  fi
fi

if [ -z "${TEST_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if command -v java >/dev/null && command -v mvn >/dev/null && infra/kafka/kafka.sh up; then
    started+=(kafka)
    export TEST_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_PORT:-19092}"
  else
    missing "Apache Kafka" "install Java 17 and Maven, or set TEST_KAFKA_BOOTSTRAP_SERVERS"
  fi
fi

# The console's browser test: Debian's Chromium (never a downloaded browser) and the built web app.
# A Chinese font too, so that its screenshots show the zh-CN pages as people see them.
if [ "$(id -u)" = 0 ] && { [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; }; then
  packages=(chromium fonts-wqy-microhei)
  apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1; }
fi
[ -x /usr/bin/chromium ] || missing Chromium "apt-get install chromium (Debian's; no browser is downloaded)"
.venv/bin/python scripts/run.py build-console || missing "the console's web app" "Node.js 20 and npm to build it"

echo "make test: PostgreSQL=${TEST_DATABASE_URL:-none} Kafka=${TEST_KAFKA_BOOTSTRAP_SERVERS:-none}"
# Two or more workers (pytest-xdist); the broker's tests share one of them (see conftest.py).
.venv/bin/pytest -n "${TEST_WORKERS:-auto}" --dist loadgroup "$@"
status=$?
if [ "$status" = 5 ]; then echo "make test: no tests were collected" >&2; fi
exit "$status"
