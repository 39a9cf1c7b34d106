#!/bin/sh
# Instructions and simulated cache misses per packet of the steady pipeline setups, counted by
# cachegrind: each setup runs twice, for 64,000 and for 640,000 packets, and the difference is
# divided by 576,000, so setting up the rig (and prefilling its table) cancels out.
#
# dataplane/benches/count.sh [setup ...]   (default: every steady setup)
set -eu
bin=$(cargo bench -p brink-dataplane --bench pipeline --no-run 2>&1 |
    grep -o 'target/release/deps/pipeline-[0-9a-f]*' | head -n 1)
setups=${*:-l2_udp_1000flows l2_tcp_1000flows ct_udp_1000flows sg_ct_udp_1000flows sg_ct_tcp_1000flows}
count() {
    BRINK_COUNT_PACKETS=$1 BRINK_SETUP=$2 taskset -c 1 valgrind --tool=cachegrind \
        --cache-sim=yes --cachegrind-out-file=/dev/null "$bin" 2>&1 |
        awk '/I +refs:/ {i=$4} /D +refs:/ {d=$4} /D1 +misses:/ {m=$4} /LLd misses:/ {l=$4}
             END {gsub(",", "", i); gsub(",", "", d); gsub(",", "", m); gsub(",", "", l);
                  print i, d, m, l}'
}
echo "setup instructions data_refs D1_misses LL_misses (per packet)"
for s in $setups; do
    a=$(count 64000 "$s")
    b=$(count 640000 "$s")
    echo "$a $b" | awk -v s="$s" '{n = 576000;
        printf "%s %.1f %.1f %.2f %.3f\n", s, ($5-$1)/n, ($6-$2)/n, ($7-$3)/n, ($8-$4)/n}'
done
