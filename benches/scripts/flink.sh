#!/usr/bin/env bash
# Builds the Flink side of lifecycle-bench (benches/flink) with its own local Maven repository
# under .cache/m2, offline once the dependencies are there, and prints the classpath to run
# dev.weir.bench.LifecycleDriver with. lifecycle-bench --system flink calls it by itself.
#   benches/scripts/flink.sh build      # compile; prints classpath=...
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
project="$repo/benches/flink"
m2="$repo/.cache/m2"
mkdir -p "$m2"
mvn_args=(-B -q -Dmaven.repo.local="$m2" -f "$project/pom.xml")
goals=(compile dependency:copy-dependencies -DoutputDirectory=target/lib)
# Offline when every plugin and dependency is already in the cache; online once otherwise.
if ! mvn "${mvn_args[@]}" -o "${goals[@]}" >/dev/null 2>&1; then
  mvn "${mvn_args[@]}" "${goals[@]}" >&2
fi
echo "classpath=$project/target/classes:$project/target/lib/*"
