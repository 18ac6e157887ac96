#!/usr/bin/env bash
# kafka.sh: a real single-node Apache Kafka broker (KRaft, combined broker+controller) on
# loopback, for weir's integration tests and local runs. The broker and its CLI tools
# come from Maven Central as jars, resolved by the machine's Maven from pom.xml beside
# this script; nothing else is downloaded. See README.md beside this script.
#
#   kafka.sh fetch
#   kafka.sh start  [--port N] [--dir D] [--config KEY=VALUE]... [--timeout S]
#   kafka.sh stop   [--dir D]
#   kafka.sh status [--dir D]
#   kafka.sh topics create NAME --partitions N [--replication-factor R]
#                         [--config KEY=VALUE]... [--if-not-exists] [--bootstrap B]
#   kafka.sh topics list|describe [NAME]|delete NAME [--bootstrap B]
#   kafka.sh smoke  [--bootstrap B] [--dir D]
#   kafka.sh tool   CLASS [ARGS...]        # any main class from the jars, e.g. a Kafka CLI tool
#   kafka.sh classpath                     # prints the classpath (fetches first)
#
# Environment: WEIR_KAFKA_VERSION (default 4.3.1), WEIR_KAFKA_HOME (jar cache, default
# <repo>/.cache/kafka), WEIR_KAFKA_DIR (default broker dir, default $WEIR_KAFKA_HOME/run),
# WEIR_KAFKA_BOOTSTRAP (broker for topics/smoke), WEIR_KAFKA_HEAP (default
# "-Xms256m -Xmx512m"), WEIR_KAFKA_JVM_OPTS (extra broker JVM flags),
# WEIR_KAFKA_FETCH_TIMEOUT (s, default 900), WEIR_KAFKA_START_TIMEOUT (s, default 60),
# WEIR_KAFKA_STOP_TIMEOUT (s, default 30), JAVA_HOME (else `java` on PATH; needs 17+).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

KAFKA_VERSION=${WEIR_KAFKA_VERSION:-4.3.1}
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
CACHE_DIR=${WEIR_KAFKA_HOME:-$REPO_ROOT/.cache/kafka}
VERSION_DIR=$CACHE_DIR/$KAFKA_VERSION
LIBS=$VERSION_DIR/libs
READY_MARKER=$VERSION_DIR/READY
DEFAULT_DIR=${WEIR_KAFKA_DIR:-$CACHE_DIR/run}
FETCH_TIMEOUT=${WEIR_KAFKA_FETCH_TIMEOUT:-900}
START_TIMEOUT=${WEIR_KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${WEIR_KAFKA_STOP_TIMEOUT:-30}
BROKER_HEAP=${WEIR_KAFKA_HEAP:--Xms256m -Xmx512m}
DIR_MARKER=.weir-kafka # a broker dir holds this file; `stop` deletes only such dirs

# Interrupted or terminated: exit, so that the EXIT traps clean up.
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "kafka.sh: $*" >&2; exit 1; }
note() { echo "kafka.sh: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# --- java and maven ------------------------------------------------------------------------

JAVA=${JAVA_HOME:+$JAVA_HOME/bin/java}
JAVA=${JAVA:-java}

need_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found: install a JDK 17 or newer (or set JAVA_HOME)"
  local v major
  v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  major=${v%%.*}
  [ "$major" = 1 ] && major=$(echo "$v" | cut -d. -f2)
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the version of $JAVA (got '$v')"
  [ "$major" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17 or newer, but $JAVA is Java $major"
}

# --- fetch -----------------------------------------------------------------------------------

pom_sum() { sha256sum "$SCRIPT_DIR/pom.xml" | cut -d' ' -f1; }
marker_text() { printf 'kafka_version=%s\npom_sha256=%s\n' "$KAFKA_VERSION" "$(pom_sum)"; }
fetched() { [ -f "$READY_MARKER" ] && [ "$(cat "$READY_MARKER")" = "$(marker_text)" ]; }

# Finds the first of the candidate main classes that the Kafka jars hold.
find_class() {
  local listing=$1 c
  shift
  for c in "$@"; do
    if grep -qxF "${c//.//}.class" "$listing"; then echo "$c"; return 0; fi
  done
  return 1
}

write_classes() {
  local dir=$1 listing=$1/classes.txt j
  : >"$listing"
  for j in "$dir"/libs/kafka*.jar; do
    unzip -Z1 "$j" '*.class' >>"$listing" 2>/dev/null || true
  done
  {
    echo "KAFKA_MAIN=$(find_class "$listing" kafka.Kafka)"
    echo "STORAGE_TOOL=$(find_class "$listing" kafka.tools.StorageTool org.apache.kafka.tools.StorageTool)"
    echo "TOPIC_COMMAND=$(find_class "$listing" org.apache.kafka.tools.TopicCommand kafka.admin.TopicCommand)"
    echo "CONSOLE_CONSUMER=$(find_class "$listing" org.apache.kafka.tools.consumer.ConsoleConsumer kafka.tools.ConsoleConsumer)"
    echo "CONSOLE_PRODUCER=$(find_class "$listing" org.apache.kafka.tools.ConsoleProducer kafka.tools.ConsoleProducer)"
    echo "PRODUCER_PERF=$(find_class "$listing" org.apache.kafka.tools.ProducerPerformance)"
  } >"$dir/classes.env"
  if grep -q '=$' "$dir/classes.env"; then
    die "the Kafka $KAFKA_VERSION jars lack main classes kafka.sh needs: $(grep '=$' "$dir/classes.env" | tr -d '=' | tr '\n' ' ')"
  fi
  rm -f "$listing"
}

do_fetch() {
  fetched && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven 3.6+ (apt-get install maven)"
  command -v unzip >/dev/null 2>&1 || die "unzip not found: install it (apt-get install unzip)"
  mkdir -p "$CACHE_DIR"
  local start log=$CACHE_DIR/fetch-$KAFKA_VERSION.log
  start=$(now)
  (
    # One fetch at a time per cache dir; a second caller waits, then finds the jars.
    flock -w "$FETCH_TIMEOUT" 9 || die "timed out waiting for another fetch of Kafka into $CACHE_DIR"
    fetched && exit 0
    note "fetching Kafka $KAFKA_VERSION jars with Maven into $VERSION_DIR"
    tmp=$(mktemp -d "$CACHE_DIR/.fetch-$KAFKA_VERSION.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    rc=0
    timeout "$FETCH_TIMEOUT" mvn -B -q -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" \
      -Dkafka.version="$KAFKA_VERSION" "$DEPENDENCY_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$tmp/libs" </dev/null >"$log" 2>&1 || rc=$?
    [ "$rc" -ne 124 ] || die "mvn timed out after ${FETCH_TIMEOUT}s resolving Kafka $KAFKA_VERSION (log: $log)"
    [ "$rc" -eq 0 ] || die "mvn could not resolve Kafka $KAFKA_VERSION from Maven Central (log: $log)"
    for j in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar"; do
      [ -f "$tmp/libs/$j" ] || die "mvn finished but $j is missing from the resolved jars (log: $log)"
    done
    ls "$tmp"/libs/log4j-core-*.jar >/dev/null 2>&1 || die "mvn finished but log4j-core is missing (log: $log)"
    write_classes "$tmp"
    chmod 755 "$tmp"
    marker_text >"$tmp/READY"
    rm -rf "$VERSION_DIR"
    mv "$tmp" "$VERSION_DIR"
    trap - EXIT
  ) 9>"$CACHE_DIR/.fetch.lock"
  fetched || die "fetch of Kafka $KAFKA_VERSION did not complete"
  note "fetched Kafka $KAFKA_VERSION ($(ls "$LIBS" | wc -l) jars, $(du -sh "$LIBS" | cut -f1)) in $(since "$start")s"
}

load_classes() {
  do_fetch
  # shellcheck disable=SC1091
  . "$VERSION_DIR/classes.env"
}

# Runs a main class from the jars with a small, quick-starting JVM and warn-level logging.
run_tool() {
  local cls=$1
  shift
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2-tools.properties" \
    -cp "$LIBS/*" "$cls" "$@"
}

# --- processes and ports -------------------------------------------------------------------

alive() { # pid: running and not a zombie
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

is_our_broker() { # pid dir: the process is the broker started from dir
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2/server.properties"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

port_free() {
  local p=$1
  port_open "$p" && return 1
  if command -v ss >/dev/null 2>&1; then
    [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] || return 1
  fi
  return 0
}

# A free port below Linux's ephemeral range (32768+), so that outgoing connections'
# source ports cannot take it between our check and the broker's bind.
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [ "$p" = "${1:-}" ] && continue
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "found no free port on 127.0.0.1 in 20000-31999"
}

resolve_dir() { # an absolute path for a broker dir
  local d=$1
  case "$d" in /*) ;; *) d=$PWD/$d ;; esac
  echo "${d%/}"
}

# --- start / stop / status -----------------------------------------------------------------

write_config() { # dir port controller_port extra_config...
  local dir=$1 port=$2 cport=$3 kv
  shift 3
  cat >"$dir/server.properties" <<EOF
# written by scripts/kafka/kafka.sh: one KRaft node, broker and controller in one process
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# one node: every internal topic has one replica
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# tests create every topic they use; a typo must fail, not make a new topic
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# a shared 2-core machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  if [ $# -gt 0 ]; then
    echo "# --config overrides (a later key wins)" >>"$dir/server.properties"
    for kv in "$@"; do echo "$kv" >>"$dir/server.properties"; done
  fi
}

launch_broker() { # dir
  local dir=$1
  # setsid: the broker outlives this script and its terminal; the child shell closes
  # every inherited descriptor above 2 (a caller's pipes or locks), writes its pid, and
  # becomes the JVM.
  # shellcheck disable=SC2086
  setsid bash -c '
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null; done
    echo $$ >"$1/broker.pid"
    shift
    exec "$@"' _ "$dir" \
    "$JAVA" $BROKER_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2-broker.properties" \
    -Dweir.kafka.log.file="$dir/broker.log" -Dkafka.logs.dir="$dir" \
    ${WEIR_KAFKA_JVM_OPTS:-} \
    -cp "$LIBS/*" "$KAFKA_MAIN" "$dir/server.properties" \
    </dev/null >"$dir/broker.out" 2>&1 &
  for _ in $(seq 1 50); do
    [ -s "$dir/broker.pid" ] && return 0
    sleep 0.1
  done
  die "the broker process did not start (see $dir/broker.out)"
}

# Kills the broker of dir (if running): TERM, then KILL after STOP_TIMEOUT seconds.
kill_broker() { # dir
  local dir=$1 pid
  pid=$(cat "$dir/broker.pid" 2>/dev/null || true)
  is_our_broker "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
    alive "$pid" || return 0
    sleep 0.1
  done
  note "broker (pid $pid) did not stop within ${STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  die "broker (pid $pid) is still running after SIGKILL"
}

# Waits until the broker accepts connections and answers a metadata request.
wait_ready() { # dir port deadline(epoch s)
  local dir=$1 port=$2 deadline=$3 pid left
  pid=$(cat "$dir/broker.pid")
  cat >"$dir/admin.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
  while :; do
    alive "$pid" || return 2
    left=$((deadline - $(date +%s)))
    [ "$left" -gt 0 ] || return 1
    if port_open "$port"; then
      [ "$left" -lt 15 ] || left=15
      if timeout "$left" "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
          -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2-tools.properties" -cp "$LIBS/*" \
          "$TOPIC_COMMAND" --bootstrap-server "127.0.0.1:$port" \
          --command-config "$dir/admin.properties" --list >"$dir/ready-check.log" 2>&1; then
        return 0
      fi
    fi
    sleep 0.3
  done
}

cmd_start() {
  local port="" dir=$DEFAULT_DIR timeout=$START_TIMEOUT configs=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) [ $# -ge 2 ] || die "--port needs a value"; port=$2; shift 2 ;;
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
      --config) [ $# -ge 2 ] || die "--config needs KEY=VALUE"; configs+=("$2"); shift 2 ;;
      --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout=$2; shift 2 ;;
      -h|--help) usage; return 0 ;;
      *) die "start: unknown argument '$1' (try: kafka.sh start [--port N] [--dir D])" ;;
    esac
  done
  if [ -n "$port" ]; then
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "--port must be a port number, got '$port'"
  fi
  [[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, got '$timeout'"
  local kv
  for kv in ${configs[@]+"${configs[@]}"}; do
    [[ "$kv" == *=* ]] || die "--config needs KEY=VALUE, got '$kv'"
  done
  dir=$(resolve_dir "$dir")
  if [ -n "$port" ] && ! port_free "$port"; then
    die "port $port on 127.0.0.1 is in use; pick another --port or leave it out"
  fi
  need_java
  load_classes

  local t0
  t0=$(now)
  if [ -e "$dir" ]; then
    if [ -f "$dir/$DIR_MARKER" ]; then
      local old
      old=$(cat "$dir/broker.pid" 2>/dev/null || true)
      if is_our_broker "$old" "$dir"; then
        die "a broker is already running from $dir (pid $old, bootstrap $(cat "$dir/bootstrap" 2>/dev/null)); run 'kafka.sh stop --dir $dir' first"
      fi
      rm -rf "$dir" # a dead broker's leftovers: start afresh
    elif [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
      die "$dir is not empty and was not made by kafka.sh; pick another --dir"
    fi
  fi
  mkdir -p "$dir"
  touch "$dir/$DIR_MARKER"

  # On any failure from here on: kill the broker, drop its data, keep the logs.
  trap 'kill_broker "'"$dir"'" || true; rm -rf "'"$dir"'/data"' EXIT

  local attempt rc cport cluster_id t_format
  for attempt in 1 2 3; do
    local this_port=$port
    if [ -z "$this_port" ]; then
      this_port=$(pick_port)
    elif ! port_free "$this_port"; then
      die "port $this_port on 127.0.0.1 is in use; pick another --port or leave it out"
    fi
    cport=$(pick_port "$this_port")
    rm -rf "$dir/data" "$dir/broker.pid"
    write_config "$dir" "$this_port" "$cport" ${configs[@]+"${configs[@]}"}
    # A random base64url UUID, as kafka-storage random-uuid makes; one starting with '-'
    # would be read as an option by the format tool (and Kafka itself never makes one), so
    # draw again: about 1 start in 64 failed on this before.
    cluster_id=-
    while [ "${cluster_id#-}" != "$cluster_id" ]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    echo "$cluster_id" >"$dir/cluster.id"
    run_tool "$STORAGE_TOOL" format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
      || die "formatting the KRaft storage failed (see $dir/format.log)"
    t_format=$(since "$t0")
    launch_broker "$dir"
    rc=0
    wait_ready "$dir" "$this_port" $(( $(date +%s) + timeout )) || rc=$?
    if [ "$rc" -eq 0 ]; then
      port=$this_port
      break
    fi
    if [ "$rc" -eq 2 ] && [ -z "$port" ] && grep -q 'Address already in use' "$dir/broker.log" "$dir/broker.out" 2>/dev/null; then
      [ "$attempt" -lt 3 ] || break
      note "a picked port was taken meanwhile; retrying with other ports"
      mv "$dir/broker.log" "$dir/broker.log.bind-failed-$attempt" 2>/dev/null || true
      continue
    fi
    if [ "$rc" -eq 2 ]; then
      die "the broker exited during start-up (see $dir/broker.log and $dir/broker.out)"
    fi
    die "the broker was not ready within ${timeout}s (see $dir/broker.log and $dir/ready-check.log)"
  done
  [ "$rc" -eq 0 ] || die "could not bind the broker to a free port after 3 tries (see $dir/broker.log)"
  trap - EXIT

  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "$cport" >"$dir/controller.port"
  note "Kafka $KAFKA_VERSION is up in $(since "$t0")s (storage formatted after ${t_format}s; pid $(cat "$dir/broker.pid"), dir $dir, controller port $cport)"
  echo "bootstrap=127.0.0.1:$port"
}

cmd_stop() {
  local dir=$DEFAULT_DIR
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
      -h|--help) usage; return 0 ;;
      *) die "stop: unknown argument '$1' (try: kafka.sh stop [--dir D])" ;;
    esac
  done
  dir=$(resolve_dir "$dir")
  if [ ! -e "$dir" ]; then
    note "no broker dir at $dir; nothing to stop"
    return 0
  fi
  [ -f "$dir/$DIR_MARKER" ] || die "$dir was not made by kafka.sh start; refusing to delete it"
  local t0 pid
  t0=$(now)
  pid=$(cat "$dir/broker.pid" 2>/dev/null || true)
  is_our_broker "$pid" "$dir" || pid=""
  kill_broker "$dir"
  rm -rf "$dir"
  if [ -n "$pid" ]; then
    note "stopped the broker (pid $pid) in $(since "$t0")s and removed $dir"
  else
    note "no broker was running from $dir; removed it"
  fi
}

cmd_status() {
  local dir=$DEFAULT_DIR pid
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
      *) die "status: unknown argument '$1' (try: kafka.sh status [--dir D])" ;;
    esac
  done
  dir=$(resolve_dir "$dir")
  pid=$(cat "$dir/broker.pid" 2>/dev/null || true)
  if [ -f "$dir/bootstrap" ] && is_our_broker "$pid" "$dir"; then
    echo "bootstrap=$(cat "$dir/bootstrap")"
    echo "pid=$pid"
    echo "dir=$dir"
  else
    die "no broker is running from $dir"
  fi
}

# --- topics / smoke / tool -----------------------------------------------------------------

# The bootstrap address: --bootstrap, else $WEIR_KAFKA_BOOTSTRAP, else the running broker of dir.
resolve_bootstrap() { # bootstrap dir
  local b=$1 dir pid
  [ -n "$b" ] && { echo "$b"; return 0; }
  [ -n "${WEIR_KAFKA_BOOTSTRAP:-}" ] && { echo "$WEIR_KAFKA_BOOTSTRAP"; return 0; }
  dir=$(resolve_dir "$2")
  pid=$(cat "$dir/broker.pid" 2>/dev/null || true)
  if [ -f "$dir/bootstrap" ] && is_our_broker "$pid" "$dir"; then
    cat "$dir/bootstrap"
    return 0
  fi
  return 1
}

cmd_topics() {
  local action=${1:-}
  [ $# -gt 0 ] && shift
  local name="" bootstrap="" dir=$DEFAULT_DIR partitions="" rf=1 extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --partitions) [ $# -ge 2 ] || die "--partitions needs a value"; partitions=$2; shift 2 ;;
      --replication-factor) [ $# -ge 2 ] || die "--replication-factor needs a value"; rf=$2; shift 2 ;;
      --config) [ $# -ge 2 ] || die "--config needs KEY=VALUE"; extra+=(--config "$2"); shift 2 ;;
      --if-not-exists|--if-exists) extra+=("$1"); shift ;;
      --bootstrap) [ $# -ge 2 ] || die "--bootstrap needs HOST:PORT"; bootstrap=$2; shift 2 ;;
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
      -*) die "topics: unknown option '$1'" ;;
      *) [ -z "$name" ] || die "topics: unexpected argument '$1'"; name=$1; shift ;;
    esac
  done
  bootstrap=$(resolve_bootstrap "$bootstrap" "$dir") \
    || die "no broker: pass --bootstrap HOST:PORT, set WEIR_KAFKA_BOOTSTRAP, or run 'kafka.sh start' first"
  need_java
  load_classes
  local base=(--bootstrap-server "$bootstrap")
  case "$action" in
    create)
      [ -n "$name" ] || die "usage: kafka.sh topics create NAME --partitions N [--bootstrap B]"
      [[ "$partitions" =~ ^[0-9]+$ ]] && [ "$partitions" -ge 1 ] || die "topics create needs --partitions N (N >= 1)"
      run_tool "$TOPIC_COMMAND" "${base[@]}" --create --topic "$name" --partitions "$partitions" \
        --replication-factor "$rf" ${extra[@]+"${extra[@]}"} || die "could not create topic '$name' on $bootstrap"
      ;;
    list)
      run_tool "$TOPIC_COMMAND" "${base[@]}" --list || die "could not list topics on $bootstrap"
      ;;
    describe)
      run_tool "$TOPIC_COMMAND" "${base[@]}" --describe ${name:+--topic "$name"} \
        || die "could not describe topics on $bootstrap"
      ;;
    delete)
      [ -n "$name" ] || die "usage: kafka.sh topics delete NAME [--bootstrap B]"
      run_tool "$TOPIC_COMMAND" "${base[@]}" --delete --topic "$name" ${extra[@]+"${extra[@]}"} \
        || die "could not delete topic '$name' on $bootstrap"
      ;;
    *) die "usage: kafka.sh topics create|list|describe|delete ..." ;;
  esac
}

# Transactions end to end: (1) the perf tool writes N records in transactions and the
# console consumer reads them all back with read_committed; (2) TxnSmoke.java commits,
# aborts and commits, and read_committed must see only the committed records.
cmd_smoke() {
  local bootstrap="" dir=$DEFAULT_DIR n=200
  while [ $# -gt 0 ]; do
    case "$1" in
      --bootstrap) [ $# -ge 2 ] || die "--bootstrap needs HOST:PORT"; bootstrap=$2; shift 2 ;;
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
      *) die "smoke: unknown argument '$1' (try: kafka.sh smoke [--bootstrap B])" ;;
    esac
  done
  need_java
  load_classes
  local t0 own_dir=""
  t0=$(now)
  if ! bootstrap=$(resolve_bootstrap "$bootstrap" "$dir"); then
    own_dir=$(mktemp -d "${TMPDIR:-/tmp}/weir-kafka-smoke.XXXXXX")
    note "no running broker: starting a throwaway one in $own_dir"
    # shellcheck disable=SC2064
    trap "\"$SCRIPT_DIR/kafka.sh\" stop --dir '$own_dir' >/dev/null 2>&1 || true" EXIT
    bootstrap=$("$SCRIPT_DIR/kafka.sh" start --dir "$own_dir") || die "could not start a broker for the smoke check"
    bootstrap=${bootstrap#bootstrap=}
  fi
  local id topic txn_topic out got
  id=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
  topic=weir-smoke-$id
  txn_topic=weir-smoke-txn-$id

  run_tool "$TOPIC_COMMAND" --bootstrap-server "$bootstrap" --create --topic "$topic" \
    --partitions 1 --replication-factor 1 >/dev/null || die "smoke: could not create topic $topic on $bootstrap"
  run_tool "$TOPIC_COMMAND" --bootstrap-server "$bootstrap" --create --topic "$txn_topic" \
    --partitions 1 --replication-factor 1 >/dev/null || die "smoke: could not create topic $txn_topic on $bootstrap"

  out=$(timeout 90 "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2-tools.properties" -cp "$LIBS/*" \
      "$PRODUCER_PERF" --topic "$topic" --num-records "$n" --record-size 32 --throughput -1 \
      --transactional-id "weir-smoke-perf-$id" --transaction-duration-ms 100 \
      --producer-props "bootstrap.servers=$bootstrap" acks=all 2>&1) \
    || die "smoke: the transactional perf producer failed: $(echo "$out" | grep -v '^\[' | tail -n1)"
  echo "$out" | grep -q "^$n records sent" || die "smoke: the perf producer did not report $n records sent"

  got=$(timeout 90 "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2-tools.properties" -cp "$LIBS/*" \
      "$CONSOLE_CONSUMER" --bootstrap-server "$bootstrap" --topic "$topic" --from-beginning \
      --isolation-level read_committed --max-messages "$n" --timeout-ms 30000 2>/dev/null | wc -l) || true
  [ "$got" -eq "$n" ] || die "smoke: a read_committed console consumer read $got of $n committed records"
  note "smoke: $n records produced in transactions, $got read back with read_committed"

  out=$(timeout 120 "$JAVA" -Xmx256m -XX:+UseSerialGC \
      -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2-tools.properties" -cp "$LIBS/*" \
      "$SCRIPT_DIR/TxnSmoke.java" "$bootstrap" "$txn_topic" 2>&1) \
    || die "smoke: $(echo "$out" | grep -v '^\[' | tail -n1)"
  note "smoke: $(echo "$out" | tail -n1)"

  if [ -z "$own_dir" ]; then
    run_tool "$TOPIC_COMMAND" --bootstrap-server "$bootstrap" --delete --topic "$topic" >/dev/null 2>&1 || true
    run_tool "$TOPIC_COMMAND" --bootstrap-server "$bootstrap" --delete --topic "$txn_topic" >/dev/null 2>&1 || true
  fi
  echo "smoke ok: transactions on $bootstrap (Kafka $KAFKA_VERSION) in $(since "$t0")s"
}

cmd_tool() {
  [ $# -ge 1 ] || die "usage: kafka.sh tool CLASS [ARGS...]"
  need_java
  load_classes
  run_tool "$@"
}

# --- main --------------------------------------------------------------------------------

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    fetch) [ $# -eq 0 ] || die "fetch takes no arguments"; do_fetch; echo "libs=$LIBS" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    topics) cmd_topics "$@" ;;
    smoke) cmd_smoke "$@" ;;
    tool) cmd_tool "$@" ;;
    classpath) do_fetch; echo "$LIBS/*" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) die "unknown command '$cmd' (commands: fetch, start, stop, status, topics, smoke, tool, classpath)" ;;
  esac
}

main "$@"
