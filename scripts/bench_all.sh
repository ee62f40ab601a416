#!/bin/sh
# Every figure of BENCHMARKS.md's top in one command: the instruction counts (callgrind), the
# chart (docs/benchmarks.svg) and the targets' summary, all from this one run.
#
# 1. scripts/hot_path_instructions.sh     -> target/bench-results/hot_path.tsv
# 2. scripts/end_to_end_instructions.sh   -> target/bench-results/end_to_end.tsv
# 3. with --timed: cargo bench --bench many_cores and --bench recovery (a few minutes of wall
#    time each, best on a quiet machine) -> many_cores.tsv, recovery.tsv
# 4. cargo run --example bench_chart      -> docs/benchmarks.svg
# 5. cargo run --example bench_summary    (every target: measured, goal, met or missed)
#
# Usage: scripts/bench_all.sh [--timed]
# Needs valgrind. Takes about three minutes without --timed once the benches are built.
set -eu
cd "$(dirname "$0")/.."

timed=false
case ${1:-} in
'') ;;
--timed) timed=true ;;
*)
    echo "usage: scripts/bench_all.sh [--timed]" >&2
    exit 2
    ;;
esac

results=${CARGO_TARGET_DIR:-target}/bench-results
mkdir -p "$results"
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT

# Says so when a step did not rewrite its results, so an old file is not taken for this run's.
check() {
    if [ ! "$results/$1" -nt "$stamp" ]; then
        echo "warning: $2 did not write $results/$1 in this run" >&2
    fi
}

scripts/hot_path_instructions.sh
check hot_path.tsv scripts/hot_path_instructions.sh
echo
scripts/end_to_end_instructions.sh
check end_to_end.tsv scripts/end_to_end_instructions.sh
if $timed; then
    echo
    cargo bench --bench many_cores
    check many_cores.tsv "cargo bench --bench many_cores"
    echo
    cargo bench --bench recovery
    check recovery.tsv "cargo bench --bench recovery"
fi
echo
cargo run --quiet --example bench_chart
echo
cargo run --quiet --example bench_summary
