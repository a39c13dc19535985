#!/usr/bin/env bash
# One Apache Kafka node (broker + KRaft controller) with SASL/SCRAM on its client listener, for
# docker-compose.yml (run inside the apache/kafka image; the tests run it with the genuine jars too).
#
#   kafka-start.sh          write the config, format the storage once (with the SCRAM users), run Kafka
#   kafka-start.sh health   exit 0 once this node answers an authenticated metadata request and the
#                           cluster has KAFKA_EXPECTED_BROKERS brokers
#
# Environment (docker-compose.yml sets it; secrets come from .env):
#   KAFKA_NODE_ID, KAFKA_ADVERTISED_HOST, KAFKA_CONTROLLER_QUORUM_VOTERS (id@host:port,...),
#   KAFKA_CLUSTER_ID (the same on every node), KAFKA_REPLICATION (internal topics' replication),
#   KAFKA_ADMIN_PASSWORD (inter-broker user "admin"), KAFKA_CLIENT_USERNAME / KAFKA_CLIENT_PASSWORD
#   (the application's user), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
#   KAFKA_DATA_DIR (/var/lib/kafka/data), KAFKA_HOME (/opt/kafka), KAFKA_EXPECTED_BROKERS (1).
#
# The client listener (and inter-broker traffic) authenticates with SCRAM-SHA-512; the controller
# listener stays PLAINTEXT (KRaft controllers cannot use SCRAM, whose credentials live in the metadata
# log they serve): it is reachable only on the compose network, never published.
set -euo pipefail

: "${KAFKA_NODE_ID:=1}" "${KAFKA_PORT:=9092}" "${KAFKA_CONTROLLER_PORT:=9093}"
: "${KAFKA_ADVERTISED_HOST:=kafka}" "${KAFKA_REPLICATION:=1}" "${KAFKA_EXPECTED_BROKERS:=1}"
: "${KAFKA_CONTROLLER_QUORUM_VOTERS:=1@${KAFKA_ADVERTISED_HOST}:${KAFKA_CONTROLLER_PORT}}"
: "${KAFKA_DATA_DIR:=/var/lib/kafka/data}" "${KAFKA_HOME:=/opt/kafka}"
: "${KAFKA_CONFIG_DIR:=/tmp/recstream-kafka}"
: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD (.env)}"
: "${KAFKA_CLIENT_USERNAME:?set KAFKA_CLIENT_USERNAME (.env)}" "${KAFKA_CLIENT_PASSWORD:?set KAFKA_CLIENT_PASSWORD (.env)}"

umask 077  # the files below hold passwords
mkdir -p "$KAFKA_CONFIG_DIR"
admin_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"${KAFKA_ADMIN_PASSWORD}\";"
cat > "$KAFKA_CONFIG_DIR/client.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=${admin_jaas}
PROPS

if [ "${1:-run}" = "health" ]; then
  out="$("$KAFKA_HOME/bin/kafka-broker-api-versions.sh" --bootstrap-server "127.0.0.1:${KAFKA_PORT}" \
         --command-config "$KAFKA_CONFIG_DIR/client.properties" 2>/dev/null)"
  [ "$(grep -c '(id: ' <<<"$out")" -ge "$KAFKA_EXPECTED_BROKERS" ]
  exit
fi

min_isr=$(( KAFKA_REPLICATION > 1 ? 2 : 1 ))
cat > "$KAFKA_CONFIG_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
listeners=SASL_PLAINTEXT://:${KAFKA_PORT},CONTROLLER://:${KAFKA_CONTROLLER_PORT}
advertised.listeners=SASL_PLAINTEXT://${KAFKA_ADVERTISED_HOST}:${KAFKA_PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=${admin_jaas}
log.dirs=${KAFKA_DATA_DIR}
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=${KAFKA_REPLICATION}
min.insync.replicas=${min_isr}
offsets.topic.replication.factor=${KAFKA_REPLICATION}
transaction.state.log.replication.factor=${KAFKA_REPLICATION}
transaction.state.log.min.isr=${min_isr}
share.coordinator.state.topic.replication.factor=${KAFKA_REPLICATION}
share.coordinator.state.topic.min.isr=${min_isr}
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
PROPS

# Formatted once per data volume; the SCRAM users are part of the cluster's first metadata.
if [ ! -f "${KAFKA_DATA_DIR}/meta.properties" ]; then
  "$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted \
    --cluster-id "${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID (22 characters, the same on every node)}" \
    --config "$KAFKA_CONFIG_DIR/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]" \
    --add-scram "SCRAM-SHA-512=[name=${KAFKA_CLIENT_USERNAME},password=${KAFKA_CLIENT_PASSWORD}]"
fi
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$KAFKA_CONFIG_DIR/server.properties"
