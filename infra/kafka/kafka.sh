#!/usr/bin/env bash
# Single-node KRaft Kafka broker for the integration tests (no Docker): the jars come from
# Maven Central through infra/kafka/pom.xml, the broker runs as a plain java process.
#
#   kafka.sh up            fetch jars if needed, format a FRESH data dir, start, wait until it answers
#                          (already running: just reports)
#   kafka.sh start         start on the EXISTING data dir (no format), wait until it answers
#   kafka.sh kill9         SIGKILL the broker (crash simulation; data kept, follow with `start`)
#   kafka.sh restart-hard  kill9 + start
#   kafka.sh down          stop it cleanly (SIGTERM, wait up to 30 s, then SIGKILL)
#   kafka.sh status        exit 0 if running and answering, 1 otherwise
#   kafka.sh fetch         only fetch the jars
#   kafka.sh tool CLASS ARGS...   run a Kafka CLI main class from the jars, e.g.
#                          kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 --list
#
# Environment:
#   KAFKA_PORT (19092)  KAFKA_CONTROLLER_PORT (19093)
#   KAFKA_CACHE_DIR     folder of the jars (<repo>/.cache/kafka/lib)
#   KAFKA_DATA_DIR      broker log dir (<repo>/.cache/kafka/data)
#   KAFKA_START_TIMEOUT seconds to wait for the broker to answer (60)
# Pid file, server.properties and kafka.log (broker output) live in <repo>/.cache/kafka.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN_DIR="$ROOT/.cache/kafka"
LIB="${KAFKA_CACHE_DIR:-$RUN_DIR/lib}"
DATA="${KAFKA_DATA_DIR:-$RUN_DIR/data}"
PORT="${KAFKA_PORT:-19092}"
CPORT="${KAFKA_CONTROLLER_PORT:-19093}"
TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
PID_FILE="$RUN_DIR/kafka.pid"
LOG="$RUN_DIR/kafka.log"
PROPS="$RUN_DIR/server.properties"
BOOTSTRAP="127.0.0.1:$PORT"

say() { echo "kafka: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

need_tools() {
  command -v java >/dev/null && command -v mvn >/dev/null && return 0
  if [ "$(id -u)" = 0 ]; then
    say "installing Java 17 and Maven (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless maven </dev/null
  else
    say "needs Java 17+ and Maven: sudo apt-get install openjdk-17-jdk-headless maven"; exit 3
  fi
}

fetch() {
  local stamp="$LIB/.pom.sha256" sum
  sum="$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
  need_tools
  say "fetching Kafka jars into $LIB (Maven)"
  mkdir -p "$LIB" && rm -f "$LIB"/*.jar
  mkdir -p "$RUN_DIR"
  if ! mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIB" \
      </dev/null >"$RUN_DIR/mvn.log" 2>&1; then
    cat "$RUN_DIR/mvn.log" >&2; die "Maven could not fetch the jars (see above)"
  fi
  echo "$sum" >"$stamp"
}

tool() {  # a Kafka CLI main class with its args; small, quick-starting JVM, logs WARN to stderr
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$LIB/*" \
    -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.log.level=WARN "$@"
}

pid() {  # prints the broker pid if it is alive
  local p
  [ -f "$PID_FILE" ] || return 1
  p="$(cat "$PID_FILE")"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && grep -qa 'kafka.Kafka' "/proc/$p/cmdline" 2>/dev/null || return 1
  echo "$p"
}

answers() {  # TCP check, then a real metadata request (bounded)
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || return 1
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$RUN_DIR/probe.properties"
  timeout 20 "$HERE/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$RUN_DIR/probe.properties" --list >/dev/null 2>&1
}

write_props() {
  mkdir -p "$RUN_DIR"
  cat >"$PROPS" <<EOF
# written by infra/kafka/kafka.sh: single-node KRaft test broker
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# a kill -9 leaves the old registration until its session expires: keep that short for restarts
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
EOF
}

format() {
  if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA")" ] && [ ! -f "$DATA/meta.properties" ]; then
    die "$DATA is not empty and is no Kafka data dir; refusing to wipe it"
  fi
  rm -rf "$DATA" && mkdir -p "$DATA"
  local id
  id="$(tool kafka.tools.StorageTool random-uuid)"
  tool kafka.tools.StorageTool format --standalone -t "$id" -c "$PROPS" >/dev/null
  say "formatted $DATA (cluster id $id)"
}

show_log() {  # first errors, then the tail of this start's log
  say "--- errors in $LOG:"; tail -n +"$1" "$LOG" | grep -E '^\[.*\] (ERROR|FATAL)|Exception' | head -n 10 >&2 || true
  say "--- last lines:"; tail -n 25 "$LOG" >&2
}

start() {
  if p="$(pid)"; then say "already running (pid $p) on $BOOTSTRAP"; return 0; fi
  [ -f "$DATA/meta.properties" ] || die "$DATA is not formatted: use 'up'"
  need_tools
  fetch
  write_props
  echo "=== start $(date -Is)" >>"$LOG"
  local from t0=$SECONDS; from=$(($(wc -l <"$LOG") + 1))
  nohup java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$LIB/*" -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.log.level=INFO \
    kafka.Kafka "$PROPS" </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PID_FILE"
  local deadline=$((SECONDS + TIMEOUT))
  # the log line is only a shortcut; readiness is a real metadata request (after 15 s: probe anyway)
  until { tail -n +"$from" "$LOG" | grep -q 'Kafka Server started' || [ $((SECONDS - t0)) -ge 15 ]; } && answers; do
    if ! pid >/dev/null; then show_log "$from"; die "broker exited during start (log: $LOG)"; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log "$from"; die "broker did not answer on $BOOTSTRAP within ${TIMEOUT}s (log: $LOG)"
    fi
    sleep 0.2
  done
  say "up on $BOOTSTRAP (pid $(cat "$PID_FILE"), log $LOG)"
}

up() {
  if p="$(pid)"; then say "already running (pid $p) on $BOOTSTRAP"; return 0; fi
  fetch
  write_props
  : >"$LOG"
  format
  start
}

kill9() {
  if p="$(pid)"; then kill -9 "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; say "killed -9 (pid $p)"
  else say "not running"; fi
  rm -f "$PID_FILE"
}

down() {
  local p i
  if ! p="$(pid)"; then say "not running"; rm -f "$PID_FILE"; return 0; fi
  kill -TERM "$p"
  for i in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then say "no exit after 30 s, SIGKILL"; kill -9 "$p" || true; fi
  rm -f "$PID_FILE"
  say "stopped (pid $p, after ~$((i / 10)) s)"
}

status() {
  local p
  if p="$(pid)" && answers; then say "running (pid $p) on $BOOTSTRAP"; return 0; fi
  if p="$(pid)"; then say "process $p alive but not answering on $BOOTSTRAP"; else say "not running"; fi
  return 1
}

cmd="${1:-}"; shift || true
case "$cmd" in
  up) up ;;
  start) start ;;
  kill9) kill9 ;;
  restart-hard) kill9; start ;;
  down) down ;;
  status) status ;;
  fetch) fetch ;;
  tool) fetch; tool "$@" ;;
  *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
