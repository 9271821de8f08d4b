#!/usr/bin/env bash
# The whole benchmark suite: bulk, reconcile, read, the writer's batch, live, exports and Claude Code
# transcripts, each beside its baselines, printed as one markdown table on stdout (cargo's
# progress goes to stderr). Heavy — about 6 minutes on the 2-core machine of docs/benchmarks.md,
# generating the trees included, and 8.6 GB of disk for the trees and databases (the transcripts
# bench adds a few minutes and a few GB of temporary files: 10,000 transcripts of about 1.8 GB, a
# 500 MB transcript and their databases, removed when it ends) — so it is not part of the test
# command; CI only builds the benches (`cargo build --release --workspace --all-targets` in
# .ci/run).
#
#   benches/suite.sh                    # trees of 10k, 100k and 1M files
#   DUCKTAIL_SUITE_SIZES=10000 benches/suite.sh   # a quick run
#   DUCKTAIL_BENCH_SMOKE=1 benches/suite.sh       # … with small transcripts too (see benches/transcripts.rs)
#
# Trees and databases are kept under $CARGO_TARGET_DIR/bench-trees/ and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ducktail/target}"
sizes="${DUCKTAIL_SUITE_SIZES:-10000,100000,1000000}"
largest="${sizes##*,}"
trees="$CARGO_TARGET_DIR/bench-trees"

cargo bench --workspace --no-run >&2
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
echo "ducktail $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) × ${cpu:-unknown CPU}, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
echo
cargo bench --workspace --bench pipeline -- --files "$sizes"
cargo bench --workspace --bench read -- --opencode "$trees/seed42-$largest" --db "$trees/bench-$largest.duckdb" --requests 200 --no-header
cargo bench --workspace --bench batch -- --files "$largest" --no-header
cargo bench --workspace --bench live -- --rates 100,1000,10000 --seconds 5 --burst 20000 --no-header
cargo bench --workspace --bench live -- --rates '' --burst 0 --new-folders 500 --opencode "$trees/seed42-$largest" --db "$trees/bench-$largest.duckdb" --no-header
# Exports: Parquet and OTLP on the 100k tree (or the largest, if smaller), live cost at 1,000 files/s.
export_size=100000
[ "$largest" -lt "$export_size" ] && export_size="$largest"
cargo bench --workspace --bench export -- --files "$export_size" --rate 1000 --seconds 5 --no-header
# Transcripts: sizes from DUCKTAIL_BENCH_TRANSCRIPTS, DUCKTAIL_BENCH_TAIL_MB, … (benches/transcripts.rs).
cargo bench --workspace --bench transcripts -- --no-header
