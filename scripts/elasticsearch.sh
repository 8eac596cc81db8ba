#!/usr/bin/env bash
# Run real Elasticsearch nodes from the Maven Central integ-test-zip, without Docker: one insecure node (the
# default, what most tests index into), or a cluster of several nodes on loopback, with or without security.
#
#   scripts/elasticsearch.sh start [--nodes N] [--secure]
#                          fetch (cached), configure, start, wait for green/yellow. One insecure node prints its
#                          URL; a cluster or a secure node prints ES_URL, ES_CA_CERTS, ES_USERNAME and ES_PASSWORD
#                          as shell assignments and writes them to .run/elasticsearch/cluster.env
#   scripts/elasticsearch.sh start --node I   start node I (1-based) of an instance again, into the same cluster
#   scripts/elasticsearch.sh stop            stop every node of the instance (SIGTERM, then SIGKILL after 60 s);
#                                            without ES_NAME/--name, both default instances ("main" and "cluster")
#   scripts/elasticsearch.sh status          "running <urls>", "degraded <k>/<n> nodes running <urls>" or "stopped"
#   scripts/elasticsearch.sh kill [--node I] SIGKILL every node, or node I (used by crash tests)
#   scripts/elasticsearch.sh fetch           download and unpack the distribution (cached); prints its folder
#   scripts/elasticsearch.sh user NAME PASSWORD [ROLE,...] | user NAME --delete
#   scripts/elasticsearch.sh role NAME FILE.json | role NAME --delete
#                          a secure instance's file-realm users and roles, on every node (default instance
#                          "cluster"); the distribution has no API keys nor native users and roles, see
#                          docs/elasticsearch-cluster.md
#
# Options (any command): --name NAME (instead of ES_NAME). An instance remembers how it was started: `stop`,
# `status`, `kill` and `start --node` need only its name. `start` with --nodes or --secure on a stopped instance
# that was started otherwise wipes its data (test clusters); TLS files and the password are kept.
#
# --secure: security on, TLS on HTTP and transport with certificates from a CA made once per instance
# (elasticsearch-certutil, kept in <instance>/certs), superuser `elastic` with a generated password (kept in
# <instance>/credentials, given to the nodes as the keystore's bootstrap.password).
#
# Environment:
#   ES_VERSION    distribution version (default 9.3.2: newest 9.x on Maven Central that runs here)
#   ES_NAME       instance name: separate data dirs, pid files and logs (default "main"; "cluster" when started
#                 with --nodes N>1 or --secure, so that a test cluster never takes the shared node's place)
#   ES_PORT       HTTP port of node 1 (default 9200; 9201 for a cluster or a secure node); node I listens on
#                 ES_PORT+I-1 and its transport port is 100 above its HTTP port
#   ES_HEAP       JVM heap per node (default 1g for one node, 512m for each node of a cluster)
#   ES_JAVA_HOME  a JDK >= 21 (default: the newest under /usr/lib/jvm)
#   ES_ENV_FILE   where a cluster or secure start writes its assignments (default: <run dir>/elasticsearch/cluster.env)
#   FLOWSINK_RUN_DIR  where data, logs and pid files live (default: <repo>/.run)
#   FLOWSINK_CACHE_DIR where the downloaded zip and unpacked tree are cached (default: ~/.cache/flowsink,
#                      /var/cache/flowsink for root)
#
# Idempotent: a second "start" reuses the cached distribution, the certificates and already running nodes.
set -euo pipefail

ES_VERSION=${ES_VERSION:-9.3.2}
repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${FLOWSINK_RUN_DIR:-$repo/.run}
# Root's home is private and the node runs as another user, so root caches under /var/cache.
if [[ $(id -u) == 0 ]]; then default_cache=/var/cache/flowsink; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/flowsink; fi
cache_dir=${FLOWSINK_CACHE_DIR:-$default_cache}
home="$cache_dir/elasticsearch-$ES_VERSION"
env_file=${ES_ENV_FILE:-$run_dir/elasticsearch/cluster.env}

log() { echo "[elasticsearch.sh] $*" >&2; }
usage() {
  echo "usage: $0 start [--nodes N] [--secure] [--node I] | stop | status | kill [--node I] | fetch" >&2
  echo "       $0 user NAME PASSWORD [ROLE,...] | user NAME --delete | role NAME FILE.json | role NAME --delete" >&2
  echo "       (any command: --name NAME)" >&2
  exit 2
}

# ------------------------------------------------------------------------------------------------ arguments
cmd=${1:-}
[[ $# -gt 0 ]] && shift
opt_nodes="" opt_secure="" opt_node="" opt_name="" opt_delete="" args=()
while (($#)); do
  case "$1" in
    --delete) opt_delete=1; shift ;;
    --nodes) opt_nodes=${2:-}; shift 2 || usage ;;
    --nodes=*) opt_nodes=${1#*=}; shift ;;
    --secure) opt_secure=1; shift ;;
    --node) opt_node=${2:-}; shift 2 || usage ;;
    --node=*) opt_node=${1#*=}; shift ;;
    --name) opt_name=${2:-}; shift 2 || usage ;;
    --name=*) opt_name=${1#*=}; shift ;;
    -*) usage ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -z "$opt_nodes" || "$opt_nodes" =~ ^[1-9][0-9]?$ ]] || { log "--nodes wants a number from 1 to 99"; exit 2; }
[[ -z "$opt_node" || "$opt_node" =~ ^[1-9][0-9]?$ ]] || { log "--node wants a node number (1-based)"; exit 2; }
if [[ -n "$opt_node" && -n "$opt_nodes$opt_secure" ]]; then log "--node restarts a node as it was: no --nodes/--secure"; exit 2; fi

# ------------------------------------------------------------------------------------------------ instance
# Sets ES_NAME, inst, nodes, secure, port, heap and what derives from them, from the options, the instance's record
# (<instance>/instance.env, written on start) and the environment.
select_instance() {   # $1: instance name
  ES_NAME=$1
  inst="$run_dir/es-$ES_NAME"
  state="$inst/instance.env"
  local rec_nodes="" rec_secure="" rec_port=""
  if [[ -f "$state" ]]; then
    # shellcheck disable=SC1090
    rec_nodes=$(. "$state"; echo "${ES_NODES:-}"); rec_secure=$(. "$state"; echo "${ES_SECURE:-}")
    rec_port=$(. "$state"; echo "${ES_PORT:-}")
  elif [[ -d "$inst" ]]; then
    rec_nodes=1; rec_secure=0   # an instance started before instances kept a record: one insecure node
  fi
  recorded_nodes=${rec_nodes:-1} recorded_secure=${rec_secure:-0}
  if [[ "$cmd" == start && -n "$opt_nodes$opt_secure" ]]; then
    nodes=${opt_nodes:-1} secure=${opt_secure:-0}
  else
    nodes=$recorded_nodes secure=$recorded_secure
  fi
  local default_port=9200
  if (( nodes > 1 || secure )); then default_port=9201; fi
  # A new start may move the instance to other ports; anything else acts on the ports it runs on.
  if [[ "$cmd" == start && -z "$opt_node" ]]; then port=${ES_PORT:-${rec_port:-$default_port}}
  else port=${rec_port:-${ES_PORT:-$default_port}}; fi
  if (( nodes > 1 )); then heap=${ES_HEAP:-512m}; else heap=${ES_HEAP:-1g}; fi
  if (( secure )); then scheme=https; else scheme=http; fi
  certs="$inst/certs"
  credentials="$inst/credentials"
  es_user="" es_password=""
  if (( secure )) && [[ -f "$credentials" ]]; then
    es_user=$(. "$credentials"; echo "$ES_USERNAME"); es_password=$(. "$credentials"; echo "$ES_PASSWORD")
  fi
}

# One node keeps the layout it always had (<instance>/{config,data,logs}, node name flowsink-NAME); node I of a
# cluster lives in <instance>/node-I and is named flowsink-NAME-I.
node_dir() { if (( nodes == 1 )); then echo "$inst"; else echo "$inst/node-$1"; fi; }
node_name() { if (( nodes == 1 )); then echo "flowsink-$ES_NAME"; else echo "flowsink-$ES_NAME-$1"; fi; }
http_port() { echo $((port + $1 - 1)); }
transport_port() { echo $((port + $1 - 1 + 100)); }
node_url() { echo "$scheme://127.0.0.1:$(http_port "$1")"; }
pid_file() { echo "$(node_dir "$1")/es.pid"; }
node_log() { echo "$(node_dir "$1")/logs/flowsink-$ES_NAME.log"; }
all_urls() { local i out=""; for i in $(seq 1 "$nodes"); do out+="${out:+,}$(node_url "$i")"; done; echo "$out"; }

# A process killed a moment ago stays a zombie until whoever adopted the daemon reaps it: that one is dead too.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
node_running() { local f; f=$(pid_file "$1"); [[ -f "$f" ]] && alive "$(cat "$f")"; }
running_nodes() { local i; for i in $(seq 1 "$nodes"); do if node_running "$i"; then echo "$i"; fi; done; }
running() { [[ -n "$(running_nodes)" ]]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

curl_es() {   # curl with this instance's CA and credentials
  local tls=()
  if (( secure )); then tls=(--cacert "$certs/ca.crt" -u "$es_user:$es_password"); fi
  curl -s -m 5 "${tls[@]}" "$@"
}

# healthy [node] [nodes wanted]: the node (default 1) answers, the cluster is yellow or green and has that many
# nodes (default: all of them).
healthy() {
  local i=${1:-1} want=${2:-$nodes}
  curl_es -f "$(node_url "$i")/_cluster/health?wait_for_status=yellow&wait_for_nodes=$want&timeout=1s" >/dev/null 2>&1
}

wait_healthy() {   # $1: seconds, then the arguments of healthy
  local deadline=$((SECONDS + $1)); shift
  until healthy "$@"; do
    if (( SECONDS > deadline )); then return 1; fi
    sleep 1
  done
}

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

# ------------------------------------------------------------------------------------------------ security
unzip_to() { python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$1" "$2"; }

# The CA, one certificate for every node (they all answer on 127.0.0.1/localhost), the superuser's password and a
# keystore holding it: made once per instance, so that clients keep trusting the same CA file across restarts.
ensure_secrets() {
  local java=$1
  [[ -s "$certs/ca.crt" && -s "$certs/node.crt" && -s "$certs/node.key" && -s "$certs/elasticsearch.keystore" \
     && -s "$credentials" ]] && return
  mkdir -p "$certs"
  local tmp; tmp=$(mktemp -d "$inst/secrets.XXXXXX")
  if [[ ! -s "$credentials" ]]; then
    printf 'ES_USERNAME=elastic\nES_PASSWORD=%s\n' "$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" \
      > "$tmp/credentials"
    chmod 600 "$tmp/credentials"; mv "$tmp/credentials" "$credentials"
    rm -f "$certs/elasticsearch.keystore"   # it holds the old password
  fi
  es_user=$(. "$credentials"; echo "$ES_USERNAME"); es_password=$(. "$credentials"; echo "$ES_PASSWORD")
  log "making the instance's TLS certificates and keystore (once; kept in $certs)"
  # Each tool is a JVM start of a few seconds: the keystore is made while the certificates are.
  local keystore_pid=""
  if [[ ! -s "$certs/elasticsearch.keystore" ]]; then
    mkdir -p "$tmp/ks"
    # The node accepts bootstrap.password as the password of `elastic` until one is set through the API.
    printf '%s' "$es_password" | ES_JAVA_HOME="$java" ES_PATH_CONF="$tmp/ks" \
      "$home/bin/elasticsearch-keystore" add -x -f bootstrap.password >"$tmp/keystore.log" 2>&1 &
    keystore_pid=$!
  fi
  if [[ ! -s "$certs/ca.crt" || ! -s "$certs/ca.key" ]]; then
    ES_JAVA_HOME="$java" "$home/bin/elasticsearch-certutil" ca --silent --pem --days 3650 --out "$tmp/ca.zip" >&2
    unzip_to "$tmp/ca.zip" "$tmp"
    mv "$tmp/ca/ca.key" "$certs/ca.key"; mv "$tmp/ca/ca.crt" "$certs/ca.crt"
    rm -f "$certs/node.crt" "$certs/node.key"   # signed by the CA just replaced
  fi
  if [[ ! -s "$certs/node.crt" || ! -s "$certs/node.key" ]]; then
    ES_JAVA_HOME="$java" "$home/bin/elasticsearch-certutil" cert --silent --pem --days 3650 \
      --ca-cert "$certs/ca.crt" --ca-key "$certs/ca.key" --name node --dns localhost --ip 127.0.0.1,::1 \
      --out "$tmp/node.zip" >&2
    unzip_to "$tmp/node.zip" "$tmp"
    mv "$tmp/node/node.key" "$certs/node.key"; mv "$tmp/node/node.crt" "$certs/node.crt"
  fi
  if [[ -n "$keystore_pid" ]]; then
    wait "$keystore_pid" || { log "elasticsearch-keystore failed:"; cat "$tmp/keystore.log" >&2; exit 1; }
    mv "$tmp/ks/elasticsearch.keystore" "$certs/elasticsearch.keystore"
  fi
  chmod 600 "$certs/ca.key" "$certs/node.key"
  rm -rf "$tmp"
}

# ------------------------------------------------------------------------------------------------ nodes
configure_node() {   # $1: node number
  local i=$1 d; d=$(node_dir "$1")
  mkdir -p "$d/config" "$d/data" "$d/logs"
  # The config dir is per node, so several nodes (a crash test's private one beside the shared one) can run at once.
  cp -rn "$home/config/." "$d/config/"
  {
    cat <<YML
cluster.name: flowsink-$ES_NAME
node.name: $(node_name "$i")
path.data: $d/data
path.logs: $d/logs
network.host: 127.0.0.1
http.port: $(http_port "$i")
transport.port: $(transport_port "$i")
YML
    if (( nodes == 1 )); then
      echo "discovery.type: single-node"
    else
      local j seeds="" names=""
      for j in $(seq 1 "$nodes"); do
        seeds+="${seeds:+, }\"127.0.0.1:$(transport_port "$j")\""; names+="${names:+, }\"$(node_name "$j")\""
      done
      echo "discovery.seed_hosts: [$seeds]"
      # Only for the very first election: a node that has joined once keeps the cluster's identity in its data
      # folder, and a restarted node must join that cluster, never bootstrap another.
      if [[ ! -d "$d/data/_state" ]]; then echo "cluster.initial_master_nodes: [$names]"; fi
    fi
    if (( secure )); then
      cat <<YML
xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: certs/node.key
xpack.security.http.ssl.certificate: certs/node.crt
xpack.security.http.ssl.certificate_authorities: [certs/ca.crt]
xpack.security.transport.ssl.enabled: true
xpack.security.transport.ssl.verification_mode: full
xpack.security.transport.ssl.key: certs/node.key
xpack.security.transport.ssl.certificate: certs/node.crt
xpack.security.transport.ssl.certificate_authorities: [certs/ca.crt]
# The file realm's users and roles (see "user" and "role") take effect within a second, not five.
resource.reload.interval.high: 1s
YML
    else
      echo "xpack.security.enabled: false"
    fi
    cat <<YML
xpack.ml.enabled: false
action.destructive_requires_name: false
# Tests and small machines run with little free disk; the defaults would turn indices read-only.
cluster.routing.allocation.disk.threshold_enabled: false
YML
  } > "$d/config/elasticsearch.yml"
  if (( secure )); then
    mkdir -p "$d/config/certs"
    cp "$certs/ca.crt" "$certs/node.crt" "$certs/node.key" "$d/config/certs/"
    cp "$certs/elasticsearch.keystore" "$d/config/elasticsearch.keystore"
  fi
  cat > "$d/config/jvm.options.d/heap.options" <<JVM
-Xms$heap
-Xmx$heap
JVM
}

launch_nodes() {   # node numbers: configure and start them together (a cluster's first election needs them all)
  local java=$1; shift
  local i
  for i in "$@"; do
    local p
    for p in "$(http_port "$i")" "$(transport_port "$i")"; do
      if port_open "$p"; then log "port $p (node $i of $ES_NAME) is taken by another process; set ES_PORT"; exit 1; fi
    done
    configure_node "$i"
  done
  local as_user=()
  if [[ $(id -u) == 0 ]]; then
    # Elasticsearch refuses to run as root: run it as a system user that owns only this instance's folder.
    id -u flowsink-es >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin flowsink-es
    chown -R flowsink-es "$inst"
    as_user=(runuser -u flowsink-es --)
  fi
  local pids=() failed=0
  for i in "$@"; do
    log "starting Elasticsearch $ES_VERSION ($(node_name "$i")) at $(node_url "$i") with $java"
    "${as_user[@]}" env ES_JAVA_HOME="$java" ES_PATH_CONF="$(node_dir "$i")/config" \
      "$home/bin/elasticsearch" -d -p "$(pid_file "$i")" >"$(node_dir "$i")/logs/stdout.log" 2>&1 &
    pids+=($!)
  done
  local k=0
  for i in "$@"; do
    if ! wait "${pids[$k]}"; then
      failed=1
      log "node $i failed to start; last log lines:"
      grep -v '^\s*at ' "$(node_log "$i")" 2>/dev/null | tail -n 15 >&2 || tail -n 15 "$(node_dir "$i")/logs/stdout.log" >&2 || true
    fi
    k=$((k + 1))
  done
  if (( failed )); then exit 1; fi
}

# NAME=value, quoted only when the value needs it, so that readers of plain KEY=value files (docker --env-file,
# dotenv) get the same values as a shell that sources the file.
assign() {
  if [[ "$2" =~ ^[A-Za-z0-9_@%+=:,./-]*$ ]]; then printf '%s=%s\n' "$1" "$2"
  else printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; fi
}

write_env() {
  local text
  text=$(printf '# %s: written by scripts/elasticsearch.sh start (instance %s, %s node(s)%s)\n' \
    "$(date -u +%FT%TZ)" "$ES_NAME" "$nodes" "$( (( secure )) && echo ", TLS and users" || true)"
    assign ES_URL "$(all_urls)"; assign ES_CA_CERTS "$( (( secure )) && echo "$certs/ca.crt" || true)"
    assign ES_USERNAME "$es_user"; assign ES_PASSWORD "$es_password")
  local f
  for f in "$inst/cluster.env" "$env_file"; do
    mkdir -p "$(dirname "$f")"
    (umask 077; printf '%s\n' "$text" > "$f.tmp") && mv "$f.tmp" "$f"
  done
  echo "$text" | grep -v '^#'
}

start() {
  if [[ -n "$opt_node" ]] && (( opt_node > nodes )); then log "$ES_NAME has $nodes node(s), not $opt_node"; exit 2; fi
  # A stopped instance asked for another shape starts afresh; a running one must be stopped first.
  if [[ -d "$inst" ]] && (( nodes != recorded_nodes || secure != recorded_secure )); then
    local want_nodes=$nodes want_secure=$secure
    nodes=$recorded_nodes secure=$recorded_secure
    if running; then
      log "$ES_NAME runs as $recorded_nodes node(s) (secure=$recorded_secure): stop it first, or use another ES_NAME"
      exit 1
    fi
    nodes=$want_nodes secure=$want_secure
    log "$ES_NAME was $recorded_nodes node(s) (secure=$recorded_secure): wiping its data for $nodes node(s) (secure=$secure)"
    rm -rf "$inst/config" "$inst/data" "$inst/logs" "$inst/es.pid" "$inst"/node-*
  fi
  local plain=0
  if (( nodes == 1 && ! secure )); then plain=1; fi
  local wanted=() i
  if [[ -n "$opt_node" ]]; then wanted=("$opt_node"); else mapfile -t wanted < <(seq 1 "$nodes"); fi
  local to_start=()
  for i in "${wanted[@]}"; do node_running "$i" || to_start+=("$i"); done
  if (( ${#to_start[@]} == 0 )) && ! wait_healthy 120 "${wanted[0]}" "$(running_nodes | wc -l)"; then
    # Alive but slow to answer (a loaded machine, a node still starting) was waited for above: starting a second
    # process on the same data path would only fail on the node lock.
    if (( nodes > 1 )); then log "$ES_NAME: its nodes run but the cluster has not answered for 120 s"; exit 1; fi
    log "pid $(cat "$(pid_file 1)") runs but has not answered for 120 s; restarting it"
    stop_nodes 1
    to_start=(1)
  fi
  if (( plain )) && (( ${#to_start[@]} )); then
    local url; url=$(node_url 1)
    if healthy || { port_open "$port" && wait_healthy 120; }; then
      log "a node already answers at $url (not started by this script); using it"; echo "$url"; return
    fi
  fi
  if (( ${#to_start[@]} )); then
    fetch
    local java; java=$(find_java)
    mkdir -p "$inst"
    if (( secure )); then ensure_secrets "$java"; fi
    printf 'ES_NODES=%s\nES_SECURE=%s\nES_PORT=%s\n' "$nodes" "$secure" "$port" > "$state"
    launch_nodes "$java" "${to_start[@]}"
    local want; want=$(running_nodes | wc -l)
    for i in "${to_start[@]}"; do
      wait_healthy 180 "$i" "$want" || {
        log "$(node_name "$i") not healthy (with $want nodes) after 180 s"; tail -n 40 "$(node_log "$i")" >&2 || true; exit 1; }
    done
    local version   # GET / is not in the integ-test-zip (no rest-root module), so ask the nodes API for the version.
    version=$(curl_es "$(node_url "${to_start[0]}")/_nodes/_local" |
      python3 -c "import json,sys; print(*[n['version'] for n in json.load(sys.stdin)['nodes'].values()])")
    log "Elasticsearch $version is up: $ES_NAME, $(running_nodes | wc -l) of $nodes node(s) running"
  fi
  if (( plain )); then node_url 1; return; fi
  if (( secure )); then
    log "URLs $(all_urls); CA $certs/ca.crt; user $es_user, password $es_password; written to $env_file"
  else
    log "URLs $(all_urls); written to $env_file"
  fi
  write_env
}

stop_nodes() {   # node numbers: SIGTERM them together, SIGKILL what is left after 60 s
  local i pids=()
  for i in "$@"; do
    if node_running "$i"; then pids+=("$(cat "$(pid_file "$i")")"); fi
  done
  if (( ${#pids[@]} )); then
    kill "${pids[@]}" 2>/dev/null || true
    local p
    for _ in $(seq 1 60); do
      local left=0
      for p in "${pids[@]}"; do if alive "$p"; then left=1; fi; done
      (( left )) || break
      sleep 1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
    wait_dead "${pids[@]}"
  fi
  for i in "$@"; do rm -f "$(pid_file "$i")"; done
}

wait_dead() {   # pids: SIGKILL takes effect at once, but the caller may start a node on the same ports next
  local p
  for _ in $(seq 1 100); do
    local left=0
    for p in "$@"; do if alive "$p"; then left=1; fi; done
    (( left )) || return 0
    sleep 0.1
  done
}

stop() {
  local was_running=0
  if running; then was_running=1; fi
  stop_nodes $(seq 1 "$nodes")
  # A node of an earlier shape (before a wipe that failed half way) must not outlive stop either.
  local f
  for f in "$inst/es.pid" "$inst"/node-*/es.pid; do
    [[ -f "$f" ]] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true; wait_dead "$(cat "$f")"; rm -f "$f"
  done
  if (( was_running )); then log "stopped $ES_NAME"; fi
}

kill_nodes() {
  local targets
  if [[ -n "$opt_node" ]]; then targets=("$opt_node"); else mapfile -t targets < <(seq 1 "$nodes"); fi
  local i
  local pids=()
  for i in "${targets[@]}"; do
    if node_running "$i"; then pids+=("$(cat "$(pid_file "$i")")"); kill -9 "${pids[-1]}"; fi
    rm -f "$(pid_file "$i")"
  done
  if (( ${#pids[@]} )); then wait_dead "${pids[@]}"; fi
}

status() {
  local alive i urls=""
  mapfile -t alive < <(running_nodes)
  local up=${#alive[@]}
  if (( up == 0 )) || ! healthy "${alive[0]}" "$up"; then echo "stopped"; return; fi
  if (( nodes == 1 )); then echo "running $(node_url 1)"; return; fi
  for i in "${alive[@]}"; do urls+="${urls:+,}$(node_url "$i")"; done
  if (( up == nodes )); then echo "running $urls"; else echo "degraded $up/$nodes nodes running $urls"; fi
}

# ------------------------------------------------------------------------------------------------ file realm
# API keys, native users and native roles live in the .security index, which this distribution cannot create (its
# mapping needs the analysis-common module, not in the integ-test-zip). A secure instance's other users and roles
# are the file realm's: files in every node's config folder, which the nodes reread every second.
realm_edit() {   # action name payload: rewrite users, users_roles and roles.yml of every node of the instance
  local confs=() i
  for i in $(seq 1 "$nodes"); do confs+=("$(node_dir "$i")/config"); done
  python3 - "$1" "$2" "$3" "$inst/roles.json" "${confs[@]}" <<'PY'
import json, os, sys
from pathlib import Path

action, name, payload, roles_json, *confs = sys.argv[1:]
roles = json.loads(Path(roles_json).read_text()) if os.path.exists(roles_json) else {}
if action == "role-put":
    roles[name] = json.loads(payload)
elif action == "role-del":
    roles.pop(name, None)
Path(roles_json).write_text(json.dumps(roles, indent=1))


def replace(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    owner = path.parent.stat()
    os.chown(tmp, owner.st_uid, owner.st_gid)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


for conf in map(Path, confs):
    if action.startswith("role"):
        replace(conf / "roles.yml", json.dumps(roles, indent=1) + "\n")  # JSON is YAML
        continue
    users = [line for line in (conf / "users").read_text().splitlines() if line and line.split(":", 1)[0] != name]
    members = {}
    for line in (conf / "users_roles").read_text().splitlines():
        if ":" in line:
            role, who = line.split(":", 1)
            members[role.strip()] = [u.strip() for u in who.split(",") if u.strip() and u.strip() != name]
    if action == "user-add":
        added = json.loads(payload)
        users.append(added["hash_line"])
        for role in added["roles"]:
            members.setdefault(role, []).append(name)
    replace(conf / "users", "".join(line + "\n" for line in users))
    replace(conf / "users_roles", "".join(f"{r}:{','.join(m)}\n" for r, m in members.items() if m))
PY
}

wait_user() {   # name present|absent [password]: until every running node sees the file realm's change
  local i deadline=$((SECONDS + 30)) code auth
  for i in $(running_nodes); do
    while true; do
      if [[ "$2" == present ]]; then auth=(-u "$1:$3")
      else auth=(-u "$es_user:$es_password" -H "es-security-runas-user: $1"); fi   # a lookup, no password needed
      code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 --cacert "$certs/ca.crt" "${auth[@]}" \
        "$(node_url "$i")/_security/_authenticate" || true)
      if [[ "$2" == present && "$code" == 200 ]] || [[ "$2" == absent && "$code" =~ ^40[13]$ ]]; then break; fi
      if (( SECONDS > deadline )); then log "node $i: user $1 not $2 after 30 s (HTTP $code)"; exit 1; fi
      sleep 0.2
    done
  done
}

realm() {   # user|role, with args
  if [[ ! -f "$state" ]] || (( ! secure )); then log "$ES_NAME is not a secure instance: start it with --secure first"; exit 1; fi
  local kind=$1 name=${args[0]:-}
  [[ "$name" =~ ^[A-Za-z0-9_.@-]+$ ]] || usage
  if [[ "$kind" == role ]]; then
    if [[ -n "$opt_delete" ]]; then realm_edit role-del "$name" ""
    else
      [[ -n "${args[1]:-}" ]] || usage
      local body; body=$(cat -- "${args[1]}")
      python3 -c "import json, sys; json.loads(sys.argv[1])" "$body" || { log "${args[1]}: not a JSON role"; exit 2; }
      realm_edit role-put "$name" "$body"
    fi
    sleep 2   # the nodes reread roles.yml every second, and no API lists file roles to watch for it
    log "role $name $( [[ -n "$opt_delete" ]] && echo deleted || echo written) on $nodes node(s)"
    return
  fi
  if [[ -n "$opt_delete" ]]; then
    realm_edit user-del "$name" ""
    wait_user "$name" absent
    log "user $name deleted"; return
  fi
  local password=${args[1]:-} role_list=${args[2]:-}
  [[ -n "$password" ]] || usage
  # elasticsearch-users computes the password hash (bcrypt, as the nodes expect) into a scratch config folder.
  local tmp; tmp=$(mktemp -d "$inst/realm.XXXXXX")
  touch "$tmp/users" "$tmp/users_roles"
  ES_JAVA_HOME="$(find_java)" ES_PATH_CONF="$tmp" "$home/bin/elasticsearch-users" useradd "$name" -p "$password" \
    ${role_list:+-r "$role_list"} >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; rm -rf "$tmp"; exit 1; }
  local payload
  payload=$(python3 -c 'import json, sys; print(json.dumps({"hash_line": open(sys.argv[1]).read().strip(), "roles": [r for r in sys.argv[2].split(",") if r]}))' \
    "$tmp/users" "$role_list")
  rm -rf "$tmp"
  realm_edit user-add "$name" "$payload"
  wait_user "$name" present "$password"
  log "user $name (roles: ${role_list:-none}) on $nodes node(s)"
}

# ------------------------------------------------------------------------------------------------ main
default_name=main
if [[ -n "$opt_node" ]] || { [[ -n "$opt_nodes" ]] && (( opt_nodes > 1 )); } || [[ -n "$opt_secure" ]]; then
  default_name=cluster
fi
name=${opt_name:-${ES_NAME:-}}
case "$cmd" in
  start) select_instance "${name:-$default_name}"; start ;;
  stop)
    if [[ -n "$name" ]]; then select_instance "$name"; stop
    else for n in main cluster; do select_instance "$n"; stop; done
    fi ;;
  kill) select_instance "${name:-$default_name}"; kill_nodes ;;
  status) select_instance "${name:-$default_name}"; status ;;
  fetch) fetch; echo "$home" ;;
  user|role) select_instance "${name:-cluster}"; realm "$cmd" ;;
  *) usage ;;
esac
