#!/usr/bin/env bash
# Measures failover: kill -9 the leader of a 3-member cluster on loopback, then time until the first
# write through a survivor succeeds. Repeats RUNS times (the old leader is restarted between runs).
# Usage: scripts/failover.sh detcd|etcd [RUNS]   (build first: cargo build --release)
set -euo pipefail
server=${1:?detcd or etcd}; runs=${2:-10}
cd "$(dirname "$0")/.."
bin=$([ "$server" = detcd ] && echo "$PWD/target/release/detcd" || command -v etcd)
dir=$(mktemp -d); trap 'pkill -f "data-dir $dir" || true' EXIT
export ETCDCTL_API=3
ic="m1=http://127.0.0.1:41380,m2=http://127.0.0.1:42380,m3=http://127.0.0.1:43380"
start() {
  local i=$1
  "$bin" --name "m$i" --data-dir "$dir/m$i" --listen-client-urls "http://127.0.0.1:4${i}379" \
    --advertise-client-urls "http://127.0.0.1:4${i}379" --listen-peer-urls "http://127.0.0.1:4${i}380" \
    --initial-advertise-peer-urls "http://127.0.0.1:4${i}380" --initial-cluster "$ic" \
    --initial-cluster-token failover >>"$dir/m$i.log" 2>&1 &
}
leader() { # prints the index (1..3) of the leader
  for i in 1 2 3; do
    out=$(etcdctl --endpoints="127.0.0.1:4${i}379" --command-timeout=1s endpoint status -w json 2>/dev/null) || continue
    python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["leader"]==s["header"]["member_id"] else 1)' <<<"$out" && { echo "$i"; return; }
  done
  return 1
}
for i in 1 2 3; do start "$i"; done
until etcdctl --endpoints=127.0.0.1:41379 --command-timeout=1s put warmup 1 >/dev/null 2>&1; do sleep 0.1; done
times=()
for run in $(seq 1 "$runs"); do
  tries=0; until l=$(leader); do sleep 0.1; (( ++tries < 300 )) || { echo "no leader" >&2; exit 1; }; done
  s=$(( l % 3 + 1 ))
  pkill -9 -f "data-dir $dir/m$l " || true
  t0=$(date +%s%N)
  until etcdctl --endpoints="127.0.0.1:4${s}379" --command-timeout=300ms put "run$run" ok >/dev/null 2>&1; do
    (( $(date +%s%N) - t0 < 30000000000 )) || { echo "run $run: no write within 30 s" >&2; exit 1; }
  done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 )); times+=("$ms"); echo "run $run: leader m$l killed, write via m$s after $ms ms"
  start "$l"
  until etcdctl --endpoints="127.0.0.1:4${l}379" --command-timeout=1s get warmup >/dev/null 2>&1; do sleep 0.1; done
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "$server failover ms over $runs runs (sorted): $sorted"
