#!/usr/bin/env bash
# Run a real single Apache Kafka broker (KRaft: broker and controller in one process) from Maven Central's jars,
# without Docker.
#
#   scripts/kafka.sh start   fetch (cached), format the data dir once, start, wait until a metadata request
#                            lists the broker; prints the bootstrap address (127.0.0.1:9092)
#   scripts/kafka.sh stop    stop the broker this script started (SIGTERM, then SIGKILL after 60 s)
#   scripts/kafka.sh status  "running <bootstrap>" or "stopped"
#   scripts/kafka.sh kill    SIGKILL the broker (used by crash tests)
#   scripts/kafka.sh fetch   download the broker's jars into the cache; prints the folder
#
# Environment:
#   KAFKA_VERSION   org.apache.kafka:kafka_2.13 version (default 4.4.0: newest 4.x on Maven Central that resolves
#                   with its dependencies here; runs on Java 17, 21 and 25)
#   KAFKA_NAME      instance name: separate data dir, pid file and log (default "main")
#   KAFKA_PORT      client (PLAINTEXT) port (default 9092); the controller listens on KAFKA_PORT+1
#   KAFKA_HEAP      JVM heap (default 512m)
#   KAFKA_JAVA_HOME a JDK >= 17 (default: the newest under /usr/lib/jvm)
#   FLOWSINK_RUN_DIR   where data, logs and pid files live (default: <repo>/.run)
#   FLOWSINK_CACHE_DIR where the jars are cached (default: ~/.cache/flowsink, /var/cache/flowsink for root)
#
# The readiness probe is a metadata request made with confluent-kafka (flowsink's Kafka client, see docs/kafka.md).
# Idempotent: a second "start" reuses the cached jars, the formatted data dir and an already running broker.
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
# Kafka's pom leaves the logging backend to the distribution; these are what its own tarball ships (slf4j 1.7 API
# bound to log4j 2).
LOG4J_VERSION=2.25.3
KAFKA_NAME=${KAFKA_NAME:-main}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_HEAP=${KAFKA_HEAP:-512m}
controller_port=$((KAFKA_PORT + 1))
repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${FLOWSINK_RUN_DIR:-$repo/.run}
if [[ $(id -u) == 0 ]]; then default_cache=/var/cache/flowsink; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/flowsink; fi
cache_dir=${FLOWSINK_CACHE_DIR:-$default_cache}
home="$cache_dir/kafka_2.13-$KAFKA_VERSION"
inst="$run_dir/kafka-$KAFKA_NAME"
pidfile="$inst/kafka.pid"
bootstrap="127.0.0.1:$KAFKA_PORT"
PYTHON=${PYTHON:-python3}

log() { echo "[kafka.sh] $*" >&2; }

# shellcheck source=scripts/jdk.sh
source "$repo/scripts/jdk.sh"

find_java() {
  if [[ -n "${KAFKA_JAVA_HOME:-}" ]]; then echo "$KAFKA_JAVA_HOME"; return; fi
  newest_jdk 17 || { log "Kafka $KAFKA_VERSION needs Java 17 or newer; none found under /usr/lib/jvm (set KAFKA_JAVA_HOME)"; exit 1; }
}

fetch() {
  [[ -f "$home/complete" ]] && return
  mkdir -p "$cache_dir"
  log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies from Maven Central"
  local tmp; tmp=$(mktemp -d "$cache_dir/kafka-fetch.XXXXXX")
  # copy-dependencies needs a project: this one exists only to name the broker and its logging backend.
  cat > "$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>flowsink</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn -B -q -f "$tmp/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >&2 || {
    rm -rf "$tmp"; log "could not fetch Kafka $KAFKA_VERSION from Maven Central"; exit 1; }
  ls "$tmp/libs"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
  touch "$tmp/complete"
  rm -rf "$home"; mv -T "$tmp" "$home"
}

pid_of() { [[ -f "$pidfile" ]] && cat "$pidfile"; }

# The pid file alone could name a recycled pid: the process must also be this instance's broker.
running() {
  local pid; pid=$(pid_of) || return 1
  [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$inst/config/server.properties"
}

# A metadata request: the broker answers it only once it has joined the quorum and is unfenced.
# $1: seconds to keep trying; $2: a pid that must stay alive (optional; exits early when it dies).
metadata_ok() {
  "$PYTHON" - "$bootstrap" "$1" "${2:-}" <<'PY'
import os, sys, time
from confluent_kafka.admin import AdminClient

bootstrap, seconds, pid = sys.argv[1], float(sys.argv[2]), sys.argv[3]
# Connection-refused noise while the broker starts is expected; the log level and error callback keep it quiet.
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": lambda err: None,
                     "socket.connection.setup.timeout.ms": 2000, "reconnect.backoff.max.ms": 500})
deadline = time.monotonic() + seconds
while True:
    try:
        if admin.list_topics(timeout=min(3.0, max(0.5, deadline - time.monotonic()))).brokers:
            sys.exit(0)
    except Exception:
        pass
    if time.monotonic() >= deadline or (pid and not os.path.exists(f"/proc/{pid}")):
        sys.exit(1)
    time.sleep(0.5)
PY
}

need_client() {
  "$PYTHON" -c "import confluent_kafka" 2>/dev/null || {
    log "$PYTHON cannot import confluent_kafka, which the readiness probe uses: pip install -e . (or make deps)"; exit 1; }
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }

configure() {
  mkdir -p "$inst/config" "$inst/data" "$inst/logs"
  cat > "$inst/config/server.properties" <<PROPS
# written by scripts/kafka.sh on every start; edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$inst/data
# One broker: every internal topic has one replica, and acks=all means this broker's write.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
num.partitions=1
# A consumer group forms at once instead of after the 3 s wait meant for many members joining together.
group.initial.rebalance.delay.ms=0
PROPS
  cat > "$inst/config/log4j2.properties" <<'LOG'
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
# Per-request lines would drown everything else.
logger.request.name = kafka.request.logger
logger.request.level = WARN
LOG
}

jvm=()
set_jvm() {   # $1: java home; fills jvm with the command line up to the main class
  jvm=("$1/bin/java" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dkafka.logs.dir="$inst/logs" -Dlog4j2.configurationFile="$inst/config/log4j2.properties"
    -cp "$home/libs/*")
}

format_storage() {
  [[ -f "$inst/data/meta.properties" ]] && return
  # A KRaft cluster id is a UUID in unpadded URL-safe base64; one per instance, kept with its data.
  local id; id=$("$PYTHON" -c "import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('='))")
  log "formatting $inst/data (cluster id $id)"
  "${jvm[@]}" kafka.tools.StorageTool format --standalone -t "$id" -c "$inst/config/server.properties" \
    >"$inst/logs/format.log" 2>&1 || { log "storage format failed:"; tail -n 20 "$inst/logs/format.log" >&2; exit 1; }
}

last_log_lines() {
  local server="$inst/logs/server.log"
  # A broker that fails dumps its whole configuration while shutting down, after the error: show the errors
  # and their causes first, then the log's last lines without the indented dumps and stack frames.
  if [[ -f "$server" ]]; then
    grep -E '\] (ERROR|FATAL) |^Caused by: ' "$server" | tail -n 12 >&2 || true
    grep -v '^\s' "$server" | tail -n 5 >&2 || true
  fi
  tail -n 10 "$inst/logs/stdout.log" >&2 2>/dev/null || true
}

start() {
  need_client
  if running; then
    if metadata_ok 120 "$(pid_of)"; then echo "$bootstrap"; return; fi
    log "pid $(pid_of) runs but has not answered a metadata request for 120 s; restarting it"
    stop
  fi
  if port_open; then
    if metadata_ok 60; then log "a broker already answers at $bootstrap (not started by this script); using it"; echo "$bootstrap"; return; fi
    log "port $KAFKA_PORT is taken by something that is not a Kafka broker"; exit 1
  fi
  fetch
  configure
  local java; java=$(find_java)
  set_jvm "$java"
  format_storage
  log "starting Kafka $KAFKA_VERSION ($KAFKA_NAME) at $bootstrap with $java"
  # setsid: the broker outlives the shell (and the test) that started it, and a Ctrl-C there does not reach it.
  # Without job control the background child leads no process group, so setsid execs java itself and $! is its pid.
  setsid "${jvm[@]}" kafka.Kafka "$inst/config/server.properties" >"$inst/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  if ! metadata_ok 120 "$(pid_of)"; then
    if running; then log "no answer to a metadata request after 120 s; stopping it. Last log lines:"; stop
    else log "the broker exited during startup. Last log lines:"; rm -f "$pidfile"; fi
    last_log_lines
    exit 1
  fi
  log "Kafka $KAFKA_VERSION is up at $bootstrap (pid $(pid_of))"
  echo "$bootstrap"
}

wait_gone() {   # $1: pid, $2: seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(pid_of)
  kill "$pid" 2>/dev/null || true
  wait_gone "$pid" 60 || { log "still running after 60 s; SIGKILL"; kill -9 "$pid" 2>/dev/null || true; wait_gone "$pid" 10 || true; }
  rm -f "$pidfile"
  log "stopped $KAFKA_NAME"
}

kill9() {
  running || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(pid_of)
  kill -9 "$pid" 2>/dev/null || true
  # A start right after must not find the old process still holding the port and the data dir's lock.
  wait_gone "$pid" 10 || true
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) kill9 ;;
  status) if running && metadata_ok 5; then echo "running $bootstrap"; else echo "stopped"; fi ;;
  fetch) fetch; echo "$home" ;;
  *) echo "usage: $0 start|stop|status|kill|fetch" >&2; exit 2 ;;
esac
