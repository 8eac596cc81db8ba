#!/usr/bin/env bash
# The whole flowsink stack: `make run` -> start, `make stop` -> stop.
#
#   scripts/stack.sh start|stop|status
#
# With a running Docker engine (`docker info` succeeds) the stack is docker-compose.yml (`docker compose up -d`,
# scale the ingest nodes with FLOWSINK_STACK_NODES); otherwise the same stack runs as local processes
# (scripts/stack_local.py: Debian's nginx, Prometheus and exporters, the Maven Central Elasticsearch).
# FLOWSINK_STACK_MODE=local|docker forces one. See docs/stack.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
PYTHON=${PYTHON:-python3}
nodes=${FLOWSINK_STACK_NODES:-3}

mode=${FLOWSINK_STACK_MODE:-}
if [[ -z "$mode" ]]; then
  # A stack started earlier keeps its mode, so `make stop` ends what `make run` started.
  if [[ -f .run/stack/mode ]]; then mode=$(cat .run/stack/mode)
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then mode=docker
  else mode=local; fi
fi

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

case "${1:-}" in
  start)
    mkdir -p .run/stack
    echo "$mode" > .run/stack/mode
    if [[ $mode == docker ]]; then
      [[ -f .env ]] || cp .env.example .env
      compose up -d --build --scale ingest="$nodes"
      echo "  NetFlow/IPFIX/sFlow (UDP, via nginx)  udp://0.0.0.0:2055, 4739, 6343"
      echo "  flows API (via nginx)                 http://127.0.0.1:8080/"
      echo "  Elasticsearch                         http://127.0.0.1:9200"
      echo "  Kibana                                http://127.0.0.1:5601"
      echo "  Grafana                               http://127.0.0.1:3000"
      echo "  Prometheus                            http://127.0.0.1:9090"
    else
      "$PYTHON" scripts/stack_local.py start --nodes "$nodes" || { rm -f .run/stack/mode; exit 1; }
    fi
    ;;
  stop)
    if [[ $mode == docker ]]; then compose down; else "$PYTHON" scripts/stack_local.py stop; fi
    rm -f .run/stack/mode
    ;;
  status)
    if [[ $mode == docker ]]; then compose ps; else "$PYTHON" scripts/stack_local.py status; fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
