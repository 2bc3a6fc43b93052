#!/bin/sh
# Init container of the sharpeye-redis StatefulSet: writes /data/conf/redis.conf and sentinel.conf.
#
# Why at every start: pods come back with new addresses and the primary may have moved while this
# one was away, so the role is asked from the Sentinels first (SENTINEL get-master-addr-by-name);
# only when none answers (the first start of the set) does pod 0 start as primary and the others
# as its replicas.  Names, not addresses, are announced (pod DNS names through the headless
# Service), so the Sentinels' view survives restarts.
#
# Environment: REDIS_PASSWORD (Secret sharpeye-redis), and for tests or other layouts:
#   POD_NAME (default: hostname), SERVICE (default sharpeye-redis), SELF (this pod's announced name,
#   default $POD_NAME.$SERVICE), PEERS (the set's names, default $SERVICE-0..2.$SERVICE),
#   REDIS_PORT (6379), SENTINEL_PORT (26379), FIRST_PRIMARY (the first peer, "host port"),
#   QUORUM (2), MASTER_NAME (sharpeye),
#   TEMPLATES (/templates), DATA (/data: the append-only files), OUT (/data/conf).
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD missing (Secret sharpeye-redis)}"
case $REDIS_PASSWORD in *[!A-Za-z0-9]*) echo "REDIS_PASSWORD: letters and digits only" >&2; exit 2 ;; esac
POD_NAME=${POD_NAME:-$(hostname)}
SERVICE=${SERVICE:-sharpeye-redis}
SELF=${SELF:-$POD_NAME.$SERVICE}
PEERS=${PEERS:-"$SERVICE-0.$SERVICE $SERVICE-1.$SERVICE $SERVICE-2.$SERVICE"}
REDIS_PORT=${REDIS_PORT:-6379}
SENTINEL_PORT=${SENTINEL_PORT:-26379}
QUORUM=${QUORUM:-2}
MASTER_NAME=${MASTER_NAME:-sharpeye}
TEMPLATES=${TEMPLATES:-/templates}
DATA=${DATA:-/data}
OUT=${OUT:-$DATA/conf}
ordinal=${POD_NAME##*-}

# The current primary as the Sentinels see it: "host port", or nothing.
primary=""
for peer in $PEERS; do
  answer=$(timeout 3 redis-cli -h "$peer" -p "$SENTINEL_PORT" --raw SENTINEL get-master-addr-by-name "$MASTER_NAME" \
           2>/dev/null | tr '\n' ' ' || true)
  set -- $answer
  if [ $# -eq 2 ]; then primary="$1 $2"; echo "sentinel $peer: primary is $primary"; break; fi
done
if [ -z "$primary" ]; then
  first=${PEERS%% *}
  if [ "$ordinal" = 0 ]; then primary="$SELF $REDIS_PORT"; else primary=${FIRST_PRIMARY:-"$first $REDIS_PORT"}; fi
  echo "no sentinel answered: first start, primary is $primary"
fi
set -- $primary
primary_host=$1
primary_port=$2
is_primary=no
if [ "$primary_host" = "$SELF" ] && [ "$primary_port" = "$REDIS_PORT" ]; then is_primary=yes; fi

umask 077
mkdir -p "$OUT"
{
  cat "$TEMPLATES/redis.conf"
  echo "port $REDIS_PORT"
  echo "dir $DATA"
  echo "requirepass $REDIS_PASSWORD"
  echo "masterauth $REDIS_PASSWORD"
  echo "replica-announce-ip $SELF"
  echo "replica-announce-port $REDIS_PORT"
  if [ $is_primary = no ]; then echo "replicaof $primary_host $primary_port"; fi
} > "$OUT/redis.conf.tmp"
mv "$OUT/redis.conf.tmp" "$OUT/redis.conf"
{
  cat "$TEMPLATES/sentinel.conf"
  echo "port $SENTINEL_PORT"
  echo "dir $OUT"
  echo "sentinel announce-ip $SELF"
  echo "sentinel announce-port $SENTINEL_PORT"
  echo "sentinel monitor $MASTER_NAME $primary_host $primary_port $QUORUM"
  echo "sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD"
  echo "sentinel down-after-milliseconds $MASTER_NAME 5000"
  echo "sentinel failover-timeout $MASTER_NAME 60000"
  echo "sentinel parallel-syncs $MASTER_NAME 1"
} > "$OUT/sentinel.conf.tmp"
mv "$OUT/sentinel.conf.tmp" "$OUT/sentinel.conf"
if [ $is_primary = yes ]; then role=primary; else role="replica of $primary_host:$primary_port"; fi
echo "wrote $OUT/redis.conf ($role) and $OUT/sentinel.conf"
