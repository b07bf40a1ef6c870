#!/usr/bin/env bash
# Single-node KRaft Kafka broker for the integration tests (no Docker): the jars come from
# Maven Central through infra/kafka/pom.xml, the broker runs as a plain java process.
#
# It authenticates every client and authorizes by ACLs, as production must: SASL (SCRAM-SHA-512) on
# 127.0.0.1:KAFKA_PORT, the same over TLS on 127.0.0.1:KAFKA_TLS_PORT (a CA of its own, made with openssl),
# SASL (PLAIN) between the broker and its controller. The users, with passwords generated once and kept in
# <run dir>/credentials (mode 600, under .cache/: never committed): one per service (case-api,
# logistics-watcher, payout-worker), `warehouse`, and the super users `admin` (tests, the ACLs) and
# `broker` (its own). Their ACLs come from shared/src/aftersales_shared/bus/acls.py and are created at
# `up` with the project's Python (.venv: `make sync` first).
#
#   kafka.sh up            fetch jars if needed, format a FRESH data dir, start, wait until it answers,
#                          create the ACLs (already running: just reports)
#   kafka.sh start         start on the EXISTING data dir (no format), wait until it answers
#   kafka.sh kill9         SIGKILL the broker (crash simulation; data kept, follow with `start`)
#   kafka.sh restart-hard  kill9 + start
#   kafka.sh down          stop it cleanly (SIGTERM, wait up to 30 s, then SIGKILL)
#   kafka.sh status        exit 0 if running and answering, 1 otherwise
#   kafka.sh acls          create the ACLs again (idempotent; `up` does it), after the table changed
#   kafka.sh env           print the `export` lines that reach it: eval "$(infra/kafka/kafka.sh env)"
#                          (KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, each
#                          service's <SERVICE>_KAFKA_USERNAME/_PASSWORD, KAFKA_ADMIN_* and KAFKA_WAREHOUSE_*,
#                          TEST_KAFKA_BOOTSTRAP_SERVERS, TEST_KAFKA_TLS_BOOTSTRAP_SERVERS and _CAFILE)
#   kafka.sh fetch         only fetch the jars
#   kafka.sh tool CLASS ARGS...   run a Kafka CLI main class from the jars, e.g. as the admin:
#                          kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 \
#                            --command-config .cache/kafka/admin.properties --list
#
# Environment:
#   KAFKA_PORT (19092)  KAFKA_CONTROLLER_PORT (19093)  KAFKA_TLS_PORT (19094)
#   KAFKA_RUN_DIR       pid file, server.properties, kafka.log, credentials, tls/ (<repo>/.cache/kafka)
#   KAFKA_CACHE_DIR     folder of the jars (<run dir>/lib)
#   KAFKA_DATA_DIR      broker log dir (<run dir>/data)
#   KAFKA_START_TIMEOUT seconds to wait for the broker to answer (60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN_DIR="${KAFKA_RUN_DIR:-$ROOT/.cache/kafka}"
LIB="${KAFKA_CACHE_DIR:-$RUN_DIR/lib}"
DATA="${KAFKA_DATA_DIR:-$RUN_DIR/data}"
PORT="${KAFKA_PORT:-19092}"
CPORT="${KAFKA_CONTROLLER_PORT:-19093}"
TLS_PORT="${KAFKA_TLS_PORT:-19094}"
TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
PID_FILE="$RUN_DIR/kafka.pid"
LOG="$RUN_DIR/kafka.log"
PROPS="$RUN_DIR/server.properties"
CREDENTIALS="$RUN_DIR/credentials"
ADMIN_PROPS="$RUN_DIR/admin.properties"
SASL_STAMP="$RUN_DIR/formatted-with-users"  # names the data dir formatted with the SCRAM users
TLS="$RUN_DIR/tls"
BOOTSTRAP="127.0.0.1:$PORT"
MECHANISM=SCRAM-SHA-512
USERS=(broker admin case-api logistics-watcher payout-worker warehouse)

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

credentials() {  # a random password per user, made once per run dir and kept (mode 600)
  local user
  mkdir -p "$RUN_DIR"
  (umask 077 && touch "$CREDENTIALS")
  chmod 600 "$CREDENTIALS"
  for user in "${USERS[@]}"; do
    grep -q "^$user=" "$CREDENTIALS" ||
      echo "$user=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)" >>"$CREDENTIALS"
  done
}

password() { grep "^$1=" "$CREDENTIALS" | head -n 1 | cut -d= -f2-; }

tls_files() {  # a CA and the broker's certificate for 127.0.0.1 and localhost, made once (openssl)
  [ -f "$TLS/broker.pem" ] && return 0
  command -v openssl >/dev/null || { say "no openssl: no TLS listener"; return 1; }
  mkdir -p "$TLS" && chmod 700 "$TLS"
  (
    cd "$TLS"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=aftersales test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out broker.crt 2>/dev/null
    # Kafka's PEM key store: the key (PKCS#8, encrypted with ssl.key.password by a scheme Java 17 reads), then the chain
    openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in broker.key -passout "pass:$(password broker)" -out broker.p8
    cat broker.p8 broker.crt ca.pem >broker.pem
    rm -f broker.csr san.ext broker.p8 ca.srl
  ) || { rm -rf "$TLS"; say "openssl failed: no TLS listener"; return 1; }
}

scram_jaas() {  # the client side of SCRAM for user $1
  echo "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$1\" password=\"$(password "$1")\";"
}

answers() {  # TCP check, then a real metadata request as the admin (bounded)
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || return 1
  [ -f "$ADMIN_PROPS" ] || return 1
  timeout 20 "$SELF" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$ADMIN_PROPS" --list >/dev/null 2>&1
}

write_props() {
  credentials
  local broker listeners advertised map tls_props=""
  broker="$(password broker)"
  listeners="CLIENT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"
  advertised="CLIENT://127.0.0.1:$PORT"
  map="CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
  if tls_files; then
    listeners="$listeners,TLS://127.0.0.1:$TLS_PORT"
    advertised="$advertised,TLS://127.0.0.1:$TLS_PORT"
    map="$map,TLS:SASL_SSL"
    tls_props="listener.name.tls.ssl.keystore.type=PEM
listener.name.tls.ssl.keystore.location=$TLS/broker.pem
listener.name.tls.ssl.key.password=$broker
listener.name.tls.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  fi
  umask 077  # both files hold passwords
  cat >"$ADMIN_PROPS" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$MECHANISM
sasl.jaas.config=$(scram_jaas admin)
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
  cat >"$PROPS" <<EOF
# written by infra/kafka/kafka.sh: single-node KRaft test broker (it holds passwords: mode 600)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=$map
# clients authenticate with SCRAM; the broker to its controller with PLAIN (a controller listener
# cannot use SCRAM: its credentials live in the metadata the controller serves)
sasl.enabled.mechanisms=$MECHANISM
sasl.mechanism.inter.broker.protocol=$MECHANISM
listener.name.client.scram-sha-512.sasl.jaas.config=$(scram_jaas broker)
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="$broker" user_broker="$broker";
$tls_props
# only the super users pass without an ACL
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:broker;User:admin
allow.everyone.if.no.acl.found=false
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
  umask 022
}

format() {
  if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA")" ] && [ ! -f "$DATA/meta.properties" ]; then
    die "$DATA is not empty and is no Kafka data dir; refusing to wipe it"
  fi
  rm -rf "$DATA" && mkdir -p "$DATA"
  local id user scram=()
  id="$(tool kafka.tools.StorageTool random-uuid)"
  for user in "${USERS[@]}"; do scram+=(--add-scram "$MECHANISM=[name=$user,password=$(password "$user")]"); done
  tool kafka.tools.StorageTool format --standalone -t "$id" -c "$PROPS" "${scram[@]}" >/dev/null
  echo "$DATA" >"$SASL_STAMP"
  say "formatted $DATA (cluster id $id; SCRAM users: ${USERS[*]})"
}

grant_acls() {  # every principal's ACLs, from the project's table (bus/acls.py)
  local py="$ROOT/.venv/bin/python"
  [ -x "$py" ] || die "the ACLs are made with the project's Python: run 'make sync', then 'kafka.sh up' again"
  env KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT \
    KAFKA_SASL_MECHANISM="$MECHANISM" KAFKA_ADMIN_USERNAME=admin KAFKA_ADMIN_PASSWORD="$(password admin)" \
    "$py" -m aftersales_shared.bus.acls --prefix "" >&2 || die "could not create the ACLs"
}

print_env() {  # the exports that reach this broker, for `make run` and the tests
  [ -s "$CREDENTIALS" ] || die "no credentials in $RUN_DIR yet: run 'kafka.sh up' first"
  local user var
  printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "$BOOTSTRAP"
  printf 'export KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT\n'
  printf 'export KAFKA_SASL_MECHANISM=%q\n' "$MECHANISM"
  for user in case-api logistics-watcher payout-worker; do
    var="$(echo "$user" | tr 'a-z-' 'A-Z_')_KAFKA"
    printf 'export %s_USERNAME=%q\nexport %s_PASSWORD=%q\n' "$var" "$user" "$var" "$(password "$user")"
  done
  for user in admin warehouse; do
    var="KAFKA_$(echo "$user" | tr 'a-z' 'A-Z')"
    printf 'export %s_USERNAME=%q\nexport %s_PASSWORD=%q\n' "$var" "$user" "$var" "$(password "$user")"
  done
  printf 'export TEST_KAFKA_BOOTSTRAP_SERVERS=%q\n' "$BOOTSTRAP"
  if [ -f "$TLS/ca.pem" ]; then
    printf 'export TEST_KAFKA_TLS_BOOTSTRAP_SERVERS=%q\n' "127.0.0.1:$TLS_PORT"
    printf 'export TEST_KAFKA_TLS_CAFILE=%q\n' "$TLS/ca.pem"
  fi
}

show_log() {  # first errors, then the tail of this start's log
  say "--- errors in $LOG:"; tail -n +"$1" "$LOG" | grep -E '^\[.*\] (ERROR|FATAL)|Exception' | head -n 10 >&2 || true
  say "--- last lines:"; tail -n 25 "$LOG" >&2
}

start() {
  if p="$(pid)"; then say "already running (pid $p) on $BOOTSTRAP"; return 0; fi
  [ -f "$DATA/meta.properties" ] || die "$DATA is not formatted: use 'up'"
  [ "$(cat "$SASL_STAMP" 2>/dev/null)" = "$DATA" ] ||
    die "$DATA was formatted without the SASL users (an older kafka.sh): 'kafka.sh up' formats it afresh"
  need_tools
  fetch
  write_props
  echo "=== start $(date -Is)" >>"$LOG"
  local from t0=$SECONDS; from=$(($(wc -l <"$LOG") + 1))
  nohup java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$LIB/*" -Dlog4j2.configurationFile="$HERE/log4j2.xml" -Dkafka.log.level=INFO \
    kafka.Kafka "$PROPS" </dev/null >>"$LOG" 2>&1 &
  local launched=$!
  echo "$launched" >"$PID_FILE"
  local deadline=$((SECONDS + TIMEOUT))
  # the log line is only a shortcut; readiness is a real metadata request (after 15 s: probe anyway)
  until { tail -n +"$from" "$LOG" | grep -q 'Kafka Server started' || [ $((SECONDS - t0)) -ge 15 ]; } && answers; do
    # (our own child: alive is enough; its command line is java's only once nohup has exec'd it)
    if ! kill -0 "$launched" 2>/dev/null; then show_log "$from"; die "broker exited during start (log: $LOG)"; fi
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
  grant_acls
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
  acls) grant_acls ;;
  env) print_env ;;
  fetch) fetch ;;
  tool) fetch; tool "$@" ;;
  *) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
