#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer; start them if they are down.
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 1)' 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "PostgreSQL is down on 127.0.0.1:5432; starting it..."
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>&1 || true
  fi
  for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
fi
if ! redis_up; then
  echo "Redis is down on 127.0.0.1:6379; starting it..."
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log 2>&1 || true
  fi
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
fi
ok=1
pg_up || { echo "error: PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started. Start it, or set TEST_DATABASE_URL."; ok=0; }
redis_up || { echo "error: Redis is not reachable on 127.0.0.1:6379 and could not be started. Start it, or set TEST_REDIS_URL."; ok=0; }
[ $ok = 1 ] || exit 1
