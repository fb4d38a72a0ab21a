#!/usr/bin/env bash
# The one test command: builds the release binary, then runs every test
# (unit, in-memory and kernel tests). The kernel tests need root: they run
# as root, are skipped with a message otherwise, and must run under CI=true.
#
#   sudo scripts/test.sh            # everything
#   scripts/test.sh                 # without root: kernel tests skipped
#   scripts/test.sh kernel_udp      # extra args go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: not root: kernel tests will be skipped (run: sudo scripts/test.sh)" >&2
fi

cargo build --release
if cargo test --release "$@"; then
    echo "test.sh: ALL TESTS PASSED"
else
    status=$?
    echo "test.sh: TESTS FAILED (exit $status)" >&2
    exit "$status"
fi

# Fuzzing (fuzz/, scripts/fuzz.sh): every target for FUZZ_SECS (60) after
# the tests passed, as root or in CI, on a full run (no extra arguments).
# FUZZ_SECS=0 skips it.
if { [ "$(id -u)" -eq 0 ] || [ "${CI:-}" = true ]; } && [ $# -eq 0 ] && [ "${FUZZ_SECS:-60}" != 0 ]; then
    scripts/fuzz.sh "${FUZZ_SECS:-60}"
fi
