# Shell helpers shared by scripts/demo and bench/scripts/tcp-e2e (sourced, not run).

# vm_create TAG I NET: namespace TAG-I whose eth0 (MAC 02:00:00:00:00:0I, address NET.I/24) is
# one end of a veth pair; the other end, TAGhI, stays in the root namespace for brink.
vm_create() {
  local tag=$1 i=$2 net=$3 ns="$1-$2"
  ip netns add "$ns"
  ip link add "${tag}h$i" type veth peer name eth0 netns "$ns"
  ip link set "${tag}h$i" up
  ip -n "$ns" link set eth0 address "02:00:00:00:00:0$i"
  ip -n "$ns" addr add "$net.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}

# vm_delete TAG I: removes what vm_create made (deleting the namespace removes the veth pair).
vm_delete() {
  ip netns del "$1-$2" 2>/dev/null || true
  ip link del "${1}h$2" 2>/dev/null || true
}

# brinkd_start BIN SOCKET LOG ARGS...: starts BIN/brinkd in the background, sets $daemon to its
# pid and waits (5 s at most) for its control socket.
brinkd_start() {
  local bin=$1 sock=$2 log=$3
  shift 3
  "$bin/brinkd" --socket "$sock" "$@" >"$log" 2>&1 &
  daemon=$!
  for _ in $(seq 50); do [[ -S "$sock" ]] && return 0; sleep 0.1; done
  cat "$log" >&2
  return 1
}

# brinkd_stop: stops the daemon brinkd_start started, if any.
brinkd_stop() {
  [[ -n "${daemon:-}" ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
}
