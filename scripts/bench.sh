#!/usr/bin/env bash
# Benchmark: tapstack (on a TAP in its own namespace) against the kernel
# talking to itself over a veth pair between two other namespaces, measured
# in the same run at the same CPU placement. Prints a table and writes
# target/bench.json. Needs root. Everything happens inside namespaces this
# script creates and removes (trap), and every step is bounded in time.
#
#   sudo scripts/bench.sh
#   sudo BENCH_PLACEMENT=same scripts/bench.sh   # everything on CPU 0
#
# The measurements live in scripts/bench.py (one function per row).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: needs root (network namespaces, TAP): sudo scripts/bench.sh" >&2
    exit 1
fi

cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/tapstack"

NS_STACK="tsbench-$$-stack"   # tapstack on tb0, kernel side 10.0.0.1
NS_CLIENT="tsbench-$$-cli"    # kernel client, veth 10.9.0.1
NS_SERVER="tsbench-$$-srv"    # kernel server, veth 10.9.0.2

cleanup() {
    for ns in "$NS_STACK" "$NS_CLIENT" "$NS_SERVER"; do
        if ip netns list | grep -qw "$ns"; then
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT INT TERM

for ns in "$NS_STACK" "$NS_CLIENT" "$NS_SERVER"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$NS_CLIENT" link add vb type veth peer name vc netns "$NS_SERVER"
ip -n "$NS_CLIENT" addr add 10.9.0.1/24 dev vb
ip -n "$NS_SERVER" addr add 10.9.0.2/24 dev vc
ip -n "$NS_CLIENT" link set vb up
ip -n "$NS_SERVER" link set vc up

# The whole run is bounded: the driver stops itself, and timeout backs it up.
timeout --kill-after=10 240 python3 scripts/bench.py drive \
    --bin "$BIN" \
    --stack-ns "$NS_STACK" --client-ns "$NS_CLIENT" --server-ns "$NS_SERVER" \
    --json "$CARGO_TARGET_DIR/bench.json"
