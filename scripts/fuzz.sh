#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECS seconds each (default 60) with
# cargo-fuzz and libFuzzer on STABLE Rust: `--sanitizer none` needs no
# nightly flag (ASan would). Installs cargo-fuzz from crates.io if missing.
# A crash stops the script non-zero; libFuzzer leaves the input in
# fuzz/artifacts/TARGET/ (replay: cargo fuzz run --sanitizer none TARGET FILE;
# then make it a regression test in the normal suite).
#
#   scripts/fuzz.sh          # 60 s per target
#   scripts/fuzz.sh 3600     # an hour per target
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=(frames tcp_conn web)
for t in "${targets[@]}"; do
    cargo fuzz build --sanitizer none -O "$t"
done
for t in "${targets[@]}"; do
    echo "fuzz.sh: $t for ${secs} s"
    mkdir -p "fuzz/corpus/$t"
    # -rss_limit_mb: a stack that allocated without bound fails here too.
    cargo fuzz run --sanitizer none -O "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
done
echo "fuzz.sh: no crash in ${#targets[@]} targets x ${secs} s"
