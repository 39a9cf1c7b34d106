#!/bin/bash
# Instructions per frame of brinkd's worker loop in testpmd's vhost-user mac loop, counted by
# callgrind: deterministic for a given build and run length, where the loop's rate on this
# machine is not (docs/BENCHMARKS.md). `brink-bench vhost` runs the loop as always, with a
# brinkd that runs under valgrind (collecting inside `Worker::run` only, idle polls included),
# so brinkd is the loop's bottleneck and every batch is full; the count is divided by the frames
# testpmd sent, which is what brinkd received.
#
# bench/scripts/vhost-count.sh [brink-l2|brink] [seconds]   (root, after cargo build --release)
set -euo pipefail
system=${1:-brink-l2}
seconds=${2:-30}
release=$(cd "$(dirname "$0")/../.." && pwd)/target/release
bin=$(mktemp -d /tmp/brkVcount.XXXXXX)
trap 'rm -rf "$bin"' EXIT
ln -s "$release/brinkctl" "$bin/brinkctl"
cat >"$bin/brinkd" <<WRAPPER
#!/bin/sh
exec valgrind --fair-sched=yes --tool=callgrind \
    --toggle-collect='brink_dataplane::worker::Worker*::run' \
    --callgrind-out-file=$bin/callgrind.out $release/brinkd "\$@"
WRAPPER
chmod +x "$bin/brinkd"
table=$(BRINK_BIN_DIR="$bin" "$release/brink-bench" vhost --seconds "$seconds" --rounds 1 \
    --systems "$system")
# The round's row ends with testpmd's "rx/tx, rx/tx" per port (its last column): sum the two tx.
frames=$(echo "$table" | awk -F'|' '$2 ~ /^ *1 *$/ {
    n = split($(NF - 1), ports, ","); for (i = 1; i <= n; i++) { split(ports[i], c, "/"); s += c[2] }
    print s }')
if [ "${frames:-0}" -le 0 ]; then
    echo "no frames went through brinkd:" >&2
    echo "$table" >&2
    exit 1
fi
instructions=$(awk '/^summary:/ {print $2}' "$bin/callgrind.out")
echo "$system: $frames frames, $((instructions / frames)) instructions per frame"
