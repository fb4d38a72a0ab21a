#!/usr/bin/env bash
# The one test command: sets up the tools the tests need, builds the release
# binary, then runs every test (unit, in-memory and kernel tests). The
# kernel tests need root: they run as root, are skipped with a message
# otherwise, and must run under CI=true.
#
#   sudo scripts/test.sh            # everything
#   scripts/test.sh                 # without root: kernel tests skipped
#   scripts/test.sh --test kernel_udp   # extra args go to `cargo test`
#
# Tools: scripts/deps.txt lists them (one line each). As root on Debian the
# missing ones are installed (quietly, and only when missing); otherwise
# each missing one is named on its own line before anything runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# sudo resets PATH and HOME: use the invoking user's rustup toolchain.
if ! command -v cargo >/dev/null; then
    for home in "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)" "${HOME:-}"; do
        if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
            export PATH="$home/.cargo/bin:$PATH"
            export CARGO_HOME="${CARGO_HOME:-$home/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
            break
        fi
    done
fi
if ! command -v cargo >/dev/null; then
    echo "test.sh: missing tool: cargo (install Rust, e.g. from https://rustup.rs)" >&2
    exit 1
fi
DEPS=scripts/deps.txt
is_root=false
[ "$(id -u)" -eq 0 ] && is_root=true

# Prints "KIND NAME PACKAGE" for each entry of deps.txt that is missing.
missing_deps() {
    local kind name pkg
    while read -r kind name pkg _; do
        case "$kind" in
        '' | '#'*) continue ;;
        cmd | cargo) command -v "$name" >/dev/null 2>&1 && continue ;;
        py) python3 -c "import $name" >/dev/null 2>&1 && continue ;;
        *)
            echo "test.sh: $DEPS: unknown kind '$kind'" >&2
            exit 2
            ;;
        esac
        echo "$kind $name $pkg"
    done <"$DEPS"
}

# Installs what is missing, as far as this machine allows. Output goes to a
# log that is shown only when an install fails.
install_deps() {
    local log apt=() pip=() cargo=() kind name pkg
    log="$(mktemp)"
    while read -r kind name pkg; do
        case "$kind" in
        cmd) apt+=("$pkg") ;;
        py) pip+=("$pkg") ;;
        cargo) cargo+=("$pkg") ;;
        esac
    done < <(missing_deps)
    if [ ${#pip[@]} -gt 0 ] && ! python3 -m pip --version >/dev/null 2>&1; then
        apt+=(python3-pip)
    fi
    if [ ${#apt[@]} -gt 0 ] && $is_root && command -v apt-get >/dev/null; then
        echo "test.sh: installing ${apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${apt[@]}"; } >"$log" 2>&1; then
            cat "$log" >&2
            echo "test.sh: apt-get install failed (log above)" >&2
        fi
    fi
    if [ ${#pip[@]} -gt 0 ] && { $is_root || [ -n "${VIRTUAL_ENV:-}" ]; }; then
        echo "test.sh: installing python ${pip[*]}"
        export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
        # Debian's own python refuses pip installs without the second form.
        if ! { python3 -m pip install -q "${pip[@]}" ||
            python3 -m pip install -q --break-system-packages "${pip[@]}"; } >"$log" 2>&1; then
            cat "$log" >&2
            echo "test.sh: pip install failed (log above)" >&2
        fi
    fi
    if [ ${#cargo[@]} -gt 0 ]; then
        echo "test.sh: installing ${cargo[*]} (cargo install)"
        if ! cargo install -q --locked "${cargo[@]}" >"$log" 2>&1; then
            cat "$log" >&2
            echo "test.sh: cargo install failed (log above)" >&2
        fi
    fi
    rm -f "$log"
}

install_deps
missing="$(missing_deps)"
if [ -n "$missing" ]; then
    while read -r kind name pkg; do
        case "$kind" in
        cmd) echo "test.sh: missing tool: $name (Debian package $pkg)" >&2 ;;
        py) echo "test.sh: missing python module: $name (pip install '$pkg')" >&2 ;;
        cargo) echo "test.sh: missing tool: $name (cargo install $pkg)" >&2 ;;
        esac
    done <<<"$missing"
    if [ "${CI:-}" = true ]; then
        echo "test.sh: CI=true and tools are missing: the tests cannot run" >&2
        exit 1
    fi
    if $is_root; then
        echo "test.sh: tests that need them will fail naming them" >&2
    fi
fi
if ! $is_root; then
    echo "test.sh: not root: kernel tests will be skipped (run: sudo scripts/test.sh)" >&2
fi

# `bench` adds the benchmark helpers (tapbench, smoltcp-baseline), so they
# are built and checked too; the tests use the same features, so one build
# serves both.
FEATURES=(--features bench)
cargo build --release "${FEATURES[@]}"
# The library alone, as a dependent crate builds it (no CLI, no apps).
cargo build --release --quiet --no-default-features --lib
# The library example (two stacks over an in-memory link, no root).
cargo run --release --quiet "${FEATURES[@]}" --example echo_inmem
# The examples tests/kernel_daemon/ runs under a daemon.
cargo build --release --quiet "${FEATURES[@]}" -p tapstack --example tokio_echo --example daemon_echo
status=0
cargo test --release --no-fail-fast "${FEATURES[@]}" "$@" || status=$?

# Fuzzing (fuzz/, scripts/fuzz.sh): every target for FUZZ_SECS (60) after
# the tests passed, as root or in CI, on a full run (no extra arguments).
# FUZZ_SECS=0 skips it.
if [ "$status" -eq 0 ] && { $is_root || [ "${CI:-}" = true ]; } && [ $# -eq 0 ] &&
    [ "${FUZZ_SECS:-60}" != 0 ]; then
    scripts/fuzz.sh "${FUZZ_SECS:-60}" || status=$?
fi

if [ "$status" -eq 0 ]; then
    echo "test.sh: ALL TESTS PASSED"
else
    echo "test.sh: TESTS FAILED (exit $status)" >&2
    exit "$status"
fi
