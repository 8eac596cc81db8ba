#!/usr/bin/env bash
# Run a real single-node Elasticsearch from the Maven Central integ-test-zip, without Docker.
#
#   scripts/elasticsearch.sh start   fetch (cached), configure, start, wait for green/yellow; prints the URL
#   scripts/elasticsearch.sh stop    stop the node this script started (SIGTERM, then SIGKILL after 60 s)
#   scripts/elasticsearch.sh status  "running <url>" or "stopped"
#   scripts/elasticsearch.sh kill    SIGKILL the node (used by crash tests)
#
# Environment:
#   ES_VERSION    distribution version (default 9.3.2: newest 9.x on Maven Central that runs here)
#   ES_NAME       instance name: separate data dir, pid file and log (default "main")
#   ES_PORT       HTTP port (default 9200); the transport port is ES_PORT+100
#   ES_HEAP       JVM heap (default 1g)
#   ES_JAVA_HOME  a JDK >= 21 (default: the newest under /usr/lib/jvm)
#   FLOWSINK_RUN_DIR  where data, logs and pid files live (default: <repo>/.run)
#   FLOWSINK_CACHE_DIR where the downloaded zip and unpacked tree are cached (default: ~/.cache/flowsink,
#                      /var/cache/flowsink for root)
#
# Idempotent: a second "start" reuses the cached distribution and an already running node.
set -euo pipefail

ES_VERSION=${ES_VERSION:-9.3.2}
ES_NAME=${ES_NAME:-main}
ES_PORT=${ES_PORT:-9200}
ES_HEAP=${ES_HEAP:-1g}
repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${FLOWSINK_RUN_DIR:-$repo/.run}
# Root's home is private and the node runs as another user, so root caches under /var/cache.
if [[ $(id -u) == 0 ]]; then default_cache=/var/cache/flowsink; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/flowsink; fi
cache_dir=${FLOWSINK_CACHE_DIR:-$default_cache}
home="$cache_dir/elasticsearch-$ES_VERSION"
inst="$run_dir/es-$ES_NAME"
pidfile="$inst/es.pid"
url="http://127.0.0.1:$ES_PORT"

log() { echo "[elasticsearch.sh] $*" >&2; }

# shellcheck source=scripts/jdk.sh
source "$repo/scripts/jdk.sh"

find_java() {
  if [[ -n "${ES_JAVA_HOME:-}" ]]; then echo "$ES_JAVA_HOME"; return; fi
  newest_jdk 21 || { log "Elasticsearch $ES_VERSION needs Java 21 or newer; none found under /usr/lib/jvm (set ES_JAVA_HOME)"; exit 1; }
}

fetch() {
  [[ -x "$home/bin/elasticsearch" ]] && return
  mkdir -p "$cache_dir"
  local zip="$cache_dir/elasticsearch-$ES_VERSION.zip"
  if [[ ! -s "$zip" ]]; then
    log "fetching org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION from Maven Central"
    mvn -q dependency:copy -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -DoutputDirectory="$cache_dir" >&2
  fi
  log "unpacking $zip"
  local tmp; tmp=$(mktemp -d "$cache_dir/unpack.XXXXXX")
  (cd "$tmp" && python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall('.')" "$zip")
  chmod +x "$tmp"/elasticsearch-*/bin/* "$tmp"/elasticsearch-*/jdk/bin/* 2>/dev/null || true
  rm -rf "$home"; mv "$tmp"/elasticsearch-*/ "$home"; rm -rf "$tmp"
}

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

healthy() { curl -sf -m 5 "$url/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

configure() {
  mkdir -p "$inst/config" "$inst/data" "$inst/logs"
  # The config dir is per instance, so several nodes (a crash test's private one beside the shared one) can run at once.
  cp -rn "$home/config/." "$inst/config/"
  cat > "$inst/config/elasticsearch.yml" <<YML
cluster.name: flowsink-$ES_NAME
node.name: flowsink-$ES_NAME
path.data: $inst/data
path.logs: $inst/logs
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $((ES_PORT + 100))
discovery.type: single-node
xpack.security.enabled: false
xpack.ml.enabled: false
action.destructive_requires_name: false
# Tests and small machines run with little free disk; the defaults would turn indices read-only.
cluster.routing.allocation.disk.threshold_enabled: false
YML
  cat > "$inst/config/jvm.options.d/heap.options" <<JVM
-Xms$ES_HEAP
-Xmx$ES_HEAP
JVM
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$ES_PORT") 2>/dev/null; }

wait_healthy() {   # $1: seconds
  local deadline=$((SECONDS + $1))
  until healthy; do
    if (( SECONDS > deadline )); then return 1; fi
    sleep 1
  done
}

start() {
  if running; then
    # Alive but slow to answer (a loaded machine, a node still starting): wait for it. Starting a second
    # process on the same data path would only fail on the node lock.
    if wait_healthy 120; then echo "$url"; return; fi
    log "pid $(cat "$pidfile") runs but has not answered for 120 s; restarting it"
    stop
  fi
  if healthy || { port_open && wait_healthy 120; }; then
    log "a node already answers at $url (not started by this script); using it"; echo "$url"; return
  fi
  fetch
  configure
  local java; java=$(find_java)
  local as_user=()
  if [[ $(id -u) == 0 ]]; then
    # Elasticsearch refuses to run as root: run it as a system user that owns only this instance's folder.
    id -u flowsink-es >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin flowsink-es
    chown -R flowsink-es "$inst"
    as_user=(runuser -u flowsink-es --)
  fi
  log "starting Elasticsearch $ES_VERSION ($ES_NAME) at $url with $java"
  "${as_user[@]}" env ES_JAVA_HOME="$java" ES_PATH_CONF="$inst/config" \
    "$home/bin/elasticsearch" -d -p "$pidfile" >"$inst/logs/stdout.log" 2>&1 || {
      log "failed to start; last log lines:"; grep -v '^\s*at ' "$inst/logs/flowsink-$ES_NAME.log" | tail -n 15 >&2 || true; exit 1; }
  wait_healthy 180 || { log "not healthy after 180 s"; tail -n 40 "$inst/logs/flowsink-$ES_NAME.log" >&2 || true; exit 1; }
  local version; # GET / is not in the integ-test-zip (no rest-root module), so ask the nodes API for the version.
  version=$(curl -s "$url/_nodes/_local" | python3 -c "import json,sys; print(*[n['version'] for n in json.load(sys.stdin)['nodes'].values()])")
  log "Elasticsearch $version is up at $url (pid $(cat "$pidfile"))"
  echo "$url"
}

stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "stopped $ES_NAME"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) running && kill -9 "$(cat "$pidfile")"; rm -f "$pidfile" ;;
  status) if running && healthy; then echo "running $url"; else echo "stopped"; fi ;;
  fetch) fetch; echo "$home" ;;
  *) echo "usage: $0 start|stop|status|kill|fetch" >&2; exit 2 ;;
esac
