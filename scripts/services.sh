#!/usr/bin/env bash
# Make sure the services the test suite talks to are up: Redis (6379), PostgreSQL (5432) and
# MariaDB (3306, the MySQL-protocol offline store's conformance server).
# Idempotent: a running service is left alone. The Redis Cluster and the crash-recovery Redis are
# started by the tests themselves on other loopback ports.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do up "$port" && return 0; sleep 0.5; done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

if ! up 6379; then
  echo "services: starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/ladle-redis.log"
  wait_for Redis 6379
fi

if ! up 5432; then
  echo "services: starting PostgreSQL on 127.0.0.1:5432"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  fi
  wait_for PostgreSQL 5432
fi
if ! up 3306; then
  echo "services: starting MariaDB on 127.0.0.1:3306"
  if [ -x /usr/sbin/mariadbd ]; then
    mkdir -p /run/mysqld 2>/dev/null && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  fi
  wait_for MariaDB 3306
fi
exit 0
