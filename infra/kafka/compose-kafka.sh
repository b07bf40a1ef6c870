#!/usr/bin/env bash
# The Kafka broker of docker-compose.yml, in the apache/kafka image (mounted at /opt/aftersales/). Like the
# test broker of kafka.sh: clients authenticate with SASL/SCRAM-SHA-512 on CLIENT (:9092, advertised as
# kafka:9092), the broker talks to its controller with SASL/PLAIN on 127.0.0.1:9093 (nobody outside the
# container reaches it), and ACLs decide the rest (StandardAuthorizer; `admin` is the only super user and
# the broker's own principal). The first start formats the data volume with the SCRAM users; the ACLs are
# made by compose's `kafka-acls` step (python -m aftersales_shared.bus.acls).
#
# Environment (docker-compose.yml sets it):
#   CLUSTER_ID              the cluster id (22 characters, base64 of a UUID)
#   SCRAM_USERS             the users made at format time: admin, each service, warehouse
#   SCRAM_PASSWORD_<USER>   each one's password, the name in capitals with - as _ (SCRAM_PASSWORD_CASE_API)
#   ADVERTISED_HOST (kafka)  BROKER_BIN (/opt/kafka/bin)  BROKER_DATA (/var/lib/kafka/data)
#   BROKER_CONFIG (/tmp/kafka: server.properties and the health check's admin.properties, mode 600)
#   BROKER_PORT (9092)  CONTROLLER_PORT (9093)
# A user added to SCRAM_USERS later, or a changed password, needs kafka-configs.sh as the admin (see
# docs/operations.md, "Kafka security"): formatting happens once.
set -euo pipefail

: "${CLUSTER_ID:?set CLUSTER_ID}" "${SCRAM_USERS:?set SCRAM_USERS}"
bin="${BROKER_BIN:-/opt/kafka/bin}"
data="${BROKER_DATA:-/var/lib/kafka/data}"
config="${BROKER_CONFIG:-/tmp/kafka}"
host="${ADVERTISED_HOST:-kafka}"
port="${BROKER_PORT:-9092}"
cport="${CONTROLLER_PORT:-9093}"
mechanism=SCRAM-SHA-512

password() {
  local variable
  variable="SCRAM_PASSWORD_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  [ -n "${!variable:-}" ] || { echo "compose-kafka: set $variable" >&2; exit 1; }
  printf '%s' "${!variable}"
}

read -r -a users <<<"$SCRAM_USERS"
[[ " ${users[*]} " == *" admin "* ]] || { echo "compose-kafka: SCRAM_USERS must include admin" >&2; exit 1; }
admin="$(password admin)"
mkdir -p "$config"
umask 077
cat >"$config/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$mechanism
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
EOF
cat >"$config/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=CLIENT://0.0.0.0:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=CLIENT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=$mechanism
sasl.mechanism.inter.broker.protocol=$mechanism
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin" user_admin="$admin";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
log.dirs=$data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
umask 022

if [ ! -f "$data/meta.properties" ]; then
  scram=()
  for user in "${users[@]}"; do scram+=(--add-scram "$mechanism=[name=$user,password=$(password "$user")]"); done
  "$bin/kafka-storage.sh" format --cluster-id "$CLUSTER_ID" --config "$config/server.properties" "${scram[@]}"
  echo "compose-kafka: formatted $data with the SCRAM users ${users[*]}"
fi
exec "$bin/kafka-server-start.sh" "$config/server.properties"
