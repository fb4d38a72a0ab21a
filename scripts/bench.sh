#!/usr/bin/env bash
# Benchmark: tapstack (on a TAP in its own namespace) against smoltcp 0.14
# (smoltcp-baseline, on a TAP in another namespace) and the kernel talking to
# itself over a veth pair between two more namespaces, measured in the same
# run, alternating, at the same CPU placement. Prints a table and the issue-5
# targets with PASS/FAIL, and writes target/bench.json. Needs root.
# Everything happens inside namespaces this script creates and removes
# (trap), and every step is bounded in time (about 5-6 minutes in all).
#
#   sudo scripts/bench.sh
#   sudo BENCH_SECS=2 BENCH_RUNS=1 scripts/bench.sh   # a quick look
#   sudo BENCH_ROWS='loss|bulk' scripts/bench.sh       # only rows whose key matches
#   sudo BENCH_ONLY=tapstack scripts/bench.sh          # only that contender
#   sudo BENCH_TAPSTACK=/tmp/old/tapstack scripts/bench.sh   # another tapstack binary
#   sudo BENCH_ROWS=idle BENCH_ONLY=tapstack BENCH_IDLE_CONNS=20000 scripts/bench.sh
#                                   # the idle-connections row with fewer connections
#   sudo BENCH_BEFORE=/tmp/old/tapstack scripts/bench.sh   # before/after, same run:
#                                   # that binary runs wherever tapstack does (tapstack/before column)
#   sudo BENCH_BEFORE_REV=HEAD~3 scripts/bench.sh   # the same, building that revision first
#                                   # (temporary worktree and its own target dir under target/before/)
#
# The measurements live in scripts/bench.py (one Row per line of the table).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: needs root (network namespaces, TAP): sudo scripts/bench.sh" >&2
    exit 1
fi
for tool in ip taskset ping python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh: '$tool' is missing" >&2; exit 1; }
done
# The loss rows need nftables (as .ci/run installs it) and, for the kernel
# baseline, ethtool (to turn the veth's segmentation offloads off).
for pkg in nft:nftables ethtool:ethtool; do
    if ! command -v "${pkg%%:*}" >/dev/null; then
        echo "bench.sh: installing ${pkg#*:} for the loss rows" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkg#*:}" >/dev/null 2>&1 ||
            echo "bench.sh: could not install ${pkg#*:}: see the loss rows" >&2
    fi
done

cargo build --release --quiet --bins --features bench
# The LD_PRELOAD shim for the daemon rows (`tapstack run` finds it beside the binary).
cargo build --release --quiet -p tapstack-preload
BIN="${BENCH_TAPSTACK:-$CARGO_TARGET_DIR/release/tapstack}"  # override for an A/B
SMOLTCP="$CARGO_TARGET_DIR/release/smoltcp-baseline"

# Builds `tapstack` at git revision $1 (only that binary: the older
# tapbench/smoltcp are not needed) and prints its path. The source goes in a
# temporary worktree; the build in target/before/target, kept between runs so
# later revisions rebuild only what changed (seeded once from this tree's
# release build: the registry crates carry over). One binary per commit is
# kept in target/before/, so asking for the same revision again builds nothing.
build_before() {
    local sha dir src out
    sha="$(git rev-parse --verify --quiet "$1^{commit}")" ||
        { echo "bench.sh: BENCH_BEFORE_REV=$1 is not a commit here" >&2; return 1; }
    dir="$CARGO_TARGET_DIR/before"
    out="$dir/tapstack-$sha"
    if [ ! -x "$out" ]; then
        mkdir -p "$dir"
        if [ ! -d "$dir/target/release" ] && [ -d "$CARGO_TARGET_DIR/release/deps" ]; then
            mkdir -p "$dir/target/release"
            cp -a "$CARGO_TARGET_DIR/release/deps" "$CARGO_TARGET_DIR/release/build" \
                "$CARGO_TARGET_DIR/release/.fingerprint" "$dir/target/release/" 2>/dev/null || true
        fi
        src="$dir/src-$sha"
        git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
        git worktree add --detach --quiet "$src" "$sha" >&2
        # A revision from before the workspace would otherwise be taken for a
        # member of this tree's workspace (cargo looks in the parent dirs).
        grep -q '^\[workspace\]' "$src/Cargo.toml" || printf '\n[workspace]\n' >>"$src/Cargo.toml"
        echo "bench.sh: building tapstack at $1 (${sha:0:12}) for the before contender" >&2
        if ! (cd "$src" && CARGO_TARGET_DIR="$dir/target" cargo build --release --quiet \
            --bin tapstack >&2); then
            git worktree remove --force "$src"
            echo "bench.sh: building $1 failed" >&2
            return 1
        fi
        cp "$dir/target/release/tapstack" "$out.part" && mv "$out.part" "$out"
        git worktree remove --force "$src"
    fi
    echo "$out"
}

BEFORE="${BENCH_BEFORE:-}"
if [ -n "${BENCH_BEFORE_REV:-}" ]; then
    if [ -n "$BEFORE" ]; then
        echo "bench.sh: set BENCH_BEFORE or BENCH_BEFORE_REV, not both" >&2
        exit 1
    fi
    BEFORE="$(build_before "$BENCH_BEFORE_REV")"
fi
if [ -n "$BEFORE" ]; then
    BEFORE="$(realpath "$BEFORE")"
    if [ ! -x "$BEFORE" ] || ! "$BEFORE" --help >/dev/null 2>&1; then
        echo "bench.sh: BENCH_BEFORE=$BEFORE is not a tapstack binary that runs" >&2
        exit 1
    fi
fi
TAPBENCH="$CARGO_TARGET_DIR/release/tapbench"

NS_STACK="tsbench-$$-stack"   # tapstack on tb0 (10.0.0.2), kernel side 10.0.0.1
NS_SMOL="tsbench-$$-smol"     # smoltcp-baseline on tb1 (10.0.0.2), kernel 10.0.0.1
NS_CLIENT="tsbench-$$-cli"    # kernel client, veth vb 10.9.0.1
NS_SERVER="tsbench-$$-srv"    # kernel server, veth vc 10.9.0.2
NS_DAEMON="tsbench-$$-dmn"    # tapstack up on tb2 + tapbench under `tapstack run`
NS_BEFORE="tsbench-$$-bef"    # the before contender (BENCH_BEFORE) on tb3
NS_BUSY="tsbench-$$-bsy"      # tapstack --busy-poll on tb4 (rr and connections/s rows)
ALL_NS=("$NS_STACK" "$NS_SMOL" "$NS_CLIENT" "$NS_SERVER" "$NS_DAEMON" "$NS_BUSY")
BEFORE_ARGS=()
if [ -n "$BEFORE" ]; then
    ALL_NS+=("$NS_BEFORE")
    BEFORE_ARGS=(--before "$BEFORE" --before-ns "$NS_BEFORE")
fi

cleanup() {
    for ns in "${ALL_NS[@]}"; do
        if ip netns list | grep -qw "$ns"; then
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT INT TERM

for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Clients: the connections/s row opens ~10^5 connections, each leaving a
    # TIME-WAIT socket for 60 s on the client (the active closer). Drop them
    # at once (the FIN/ACK exchange on the wire is unchanged) and widen the
    # port range, so ports never run out.
    ip netns exec "$ns" sysctl -qw net.ipv4.tcp_max_tw_buckets=0 \
        net.ipv4.ip_local_port_range="1024 65535"
done
ip -n "$NS_CLIENT" link add vb type veth peer name vc netns "$NS_SERVER"
ip -n "$NS_CLIENT" addr add 10.9.0.1/24 dev vb
ip -n "$NS_SERVER" addr add 10.9.0.2/24 dev vc
ip -n "$NS_CLIENT" link set vb up
ip -n "$NS_SERVER" link set vc up

KERNEL_CC="$(ip netns exec "$NS_CLIENT" sysctl -n net.ipv4.tcp_congestion_control)"

# The whole run is bounded: every step of the driver is, and timeout backs
# it up. The idle-connections row's kernel contender (up to ~4 minutes at
# 100,000 connections) and a before contender (it runs every tapstack row
# again) lengthen the run.
BOUND=1020
if [ -n "$BEFORE" ]; then
    BOUND=$((BOUND + 600))
fi
timeout --kill-after=10 "$BOUND" python3 scripts/bench.py drive "${BEFORE_ARGS[@]}" \
    --bin "$BIN" --smoltcp "$SMOLTCP" --tapbench "$TAPBENCH" \
    --stack-ns "$NS_STACK" --smol-ns "$NS_SMOL" \
    --client-ns "$NS_CLIENT" --server-ns "$NS_SERVER" --daemon-ns "$NS_DAEMON" \
    --busy-ns "$NS_BUSY" \
    --kernel-cc "$KERNEL_CC" --json "$CARGO_TARGET_DIR/bench.json"
