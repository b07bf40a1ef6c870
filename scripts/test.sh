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

echo "make test: PostgreSQL=${TEST_DATABASE_URL:-none} Kafka=${TEST_KAFKA_BOOTSTRAP_SERVERS:-none}"
.venv/bin/pytest "$@"
status=$?
if [ "$status" = 5 ]; then echo "make test: no tests were collected" >&2; fi
exit "$status"
