#!/bin/bash
# Instructions per frame of brinkd's worker loop in testpmd's vhost-user mac loop, counted by
# callgrind: deterministic for a given build, where the loop's rate on this machine is not
# (docs/BENCHMARKS.md). brinkd runs under valgrind (collecting inside `Worker::run` only), so it
# is the loop's bottleneck and every batch is full; the count divides by the frames it received.
#
# bench/scripts/vhost-count.sh [l2|sg] [seconds]   (run as root, after cargo build --release)
#   l2: switching only; sg: port security, a stateful group and conntrack, as brink-bench vhost.
set -euo pipefail
setup=${1:-l2}
seconds=${2:-30}
bin=$(cd "$(dirname "$0")/../.." && pwd)/target/release
dir=$(mktemp -d /tmp/brkVcount.XXXXXX)
mkdir -p "$dir/huge" "$dir/b"
pages=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
    pkill -f "brkVcount$$" 2>/dev/null || true
    umount "$dir/huge" 2>/dev/null || true
    echo "$pages" >/proc/sys/vm/nr_hugepages
    rm -rf "$dir"
}
trap cleanup EXIT
mount -t hugetlbfs -o pagesize=2M nodev "$dir/huge"
echo $((pages + 320)) >/proc/sys/vm/nr_hugepages
timeout -s INT "$seconds" dpdk-testpmd -l 0,1 --main-lcore 1 --no-pci --single-file-segments \
    -m 256 --file-prefix "brkVcount$$" --huge-dir "$dir/huge" \
    --vdev "net_virtio_user0,path=$dir/vm1.sock,server=1,queues=1,mrg_rxbuf=1,mac=02:00:00:00:00:01" \
    --vdev "net_virtio_user1,path=$dir/vm2.sock,server=1,queues=1,mrg_rxbuf=1,mac=02:00:00:00:00:02" \
    -- --nb-cores=1 --forward-mode=mac --tx-first --stats-period=2 --total-num-mbufs=4096 \
    --eth-peer=0,02:00:00:00:00:02 --eth-peer=1,02:00:00:00:00:01 >"$dir/testpmd.log" 2>&1 &
testpmd=$!
sleep 1.5
valgrind --fair-sched=yes --tool=callgrind --toggle-collect='brink_dataplane::worker::Worker*::run' \
    --callgrind-out-file="$dir/callgrind.out" "$bin/brinkd" --socket "$dir/b/ctl.sock" \
    --state-dir "$dir/b/state" --cores 1 >"$dir/brinkd.log" 2>&1 &
brinkd=$!
# brinkd under valgrind answers slowly: retry each command for up to 15 s.
ctl() {
    for _ in $(seq 50); do
        "$bin/brinkctl" --socket "$dir/b/ctl.sock" "$@" >/dev/null 2>&1 && return
        sleep 0.3
    done
    echo "brinkctl $* failed" >&2
    exit 1
}
ctl network add blue
if [ "$setup" = sg ]; then
    ctl sg add loop
    ctl sg rule add loop --direction egress
    ctl sg rule add loop --direction ingress --protocol udp
fi
for n in 1 2; do
    case $setup in
    l2) filter=(--port-security off --no-conntrack) ;;
    *) filter=(--sg loop --allowed-pair "198.18.0.1,02:00:00:00:00:0$n") ;;
    esac
    ctl port add "vm$n" --network blue --type vhost-user --vhost-socket "$dir/vm$n.sock" \
        --mac "02:00:00:00:00:0$n" --queues 1 "${filter[@]}"
done
wait "$testpmd" || true
"$bin/brinkctl" --socket "$dir/b/ctl.sock" --json stats >"$dir/stats.json"
kill -TERM "$brinkd"
wait "$brinkd" || true
python3 - "$dir" "$setup" <<'PY'
import json, re, sys
d, setup = sys.argv[1], sys.argv[2]
stats = json.load(open(d + "/stats.json"))
frames = sum(p["rx_packets"] for p in stats["ports"])
ir = next(int(m.group(1)) for line in open(d + "/callgrind.out")
          if (m := re.match(r"summary: (\d+)", line)))
w = stats["workers"][0]
print(f"{setup}: {frames} frames, {w['batches']} batches, {w['idle_polls']} idle polls, "
      f"{ir / max(frames, 1):.0f} instructions per frame")
PY
