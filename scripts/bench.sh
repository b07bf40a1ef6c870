#!/usr/bin/env bash
# `make bench`: the benchmarks in bench/, each printing its numbers and its ratios against the targets of
# ARCHITECTURE.md ("Performance targets"). Ratios are printed, never asserted: a target missed is not a
# failure of this script; a benchmark that crashes is.
#
#   scripts/bench.sh                 every benchmark that can run here
#   scripts/bench.sh NAME [ARGS...]  only bench/NAME.py, with its own flags, e.g.
#                                    scripts/bench.sh create_case --requests 600 --rounds 1
#
# Starts PostgreSQL (infra/postgres/pg.sh) unless BENCH_DATABASE_URL or TEST_DATABASE_URL names a server,
# and Apache Kafka (infra/kafka/kafka.sh) for the benchmarks that need it when Java and Maven are there
# (or TEST_KAFKA_BOOTSTRAP_SERVERS names a broker); stops what it started. A benchmark whose
# infrastructure is missing is skipped with a message.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
source scripts/started.sh

needs_kafka() { grep -qE "bootstrap[-_]servers|aiokafka" "bench/$1.py"; }

ensure_pg() {
  [ -n "${BENCH_DATABASE_URL:-${TEST_DATABASE_URL:-}}" ] && return 0
  if infra/postgres/pg.sh status >/dev/null 2>&1; then
    :
  elif infra/postgres/pg.sh up; then
    started+=(pg)
  else
    echo "make bench: PostgreSQL not available (install the postgresql Debian package, or set TEST_DATABASE_URL)" >&2
    return 1
  fi
  TEST_DATABASE_URL="$(infra/postgres/pg.sh url)"
  export TEST_DATABASE_URL
}

ensure_kafka() {
  [ -n "${TEST_KAFKA_BOOTSTRAP_SERVERS:-}" ] && return 0
  [ -x infra/kafka/kafka.sh ] || [ -f infra/kafka/kafka.sh ] || return 1
  if bash infra/kafka/kafka.sh status >/dev/null 2>&1; then
    :
  elif command -v java >/dev/null && command -v mvn >/dev/null && bash infra/kafka/kafka.sh up; then
    started+=(kafka)
  else
    echo "make bench: Apache Kafka not available (install Java 17 and Maven, or set TEST_KAFKA_BOOTSTRAP_SERVERS)" >&2
    return 1
  fi
  export TEST_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_PORT:-19092}"
}

if [ $# -gt 0 ]; then
  names=("$1"); shift
  [ -f "bench/${names[0]}.py" ] || { echo "make bench: no bench/${names[0]}.py" >&2; exit 2; }
else
  names=()
  for f in bench/*.py; do names+=("$(basename "$f" .py)"); done
fi

ensure_pg || exit 1
status=0
for name in "${names[@]}"; do
  if needs_kafka "$name" && ! ensure_kafka; then
    echo "make bench: skipping $name (needs Kafka)" >&2
    continue
  fi
  echo "== bench/$name.py"
  "$PY" "bench/$name.py" "$@" || status=1
  echo
done
exit "$status"
