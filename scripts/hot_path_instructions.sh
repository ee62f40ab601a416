#!/bin/sh
# Instructions per request for each stack of the `per_request` bench group, counted by callgrind.
#
# Wall time on a shared two-core VM drifts by tens of percent between runs; instruction counts do
# not. The bench binary is run in criterion's profile mode with HOT_PATH_PROFILE set, which routes
# each measured call through `profiled_call` (benches/hot_path.rs); callgrind collects only inside
# it (poll_ready, call, polling the future to its answer: not the request building, not
# criterion), and the count is divided by the number of calls.
#
# Each stack is compared with SetRequestHeader on the same request and response: with a value made
# at run time where the bench has that stack (the empty GET and the SUCCESS answer, issue 13's
# baselines), else with a static value. Prints a Markdown table and writes the same figures to
# target/bench-results/hot_path.tsv (`stack<TAB>instructions<TAB>baseline_stack<TAB>baseline_instructions`),
# which `cargo run --example bench_summary` and `cargo run --example bench_chart` read.
#
# Usage: scripts/hot_path_instructions.sh [stack ...]    (default: all stacks of per_request)
# Needs valgrind. Takes about two minutes.
set -eu
cd "$(dirname "$0")/.."

# callgrind counts every pass of a `rep stosb` or `rep movsb` as one instruction, and glibc's memset
# and memcpy switch to those at about 2 KiB: wiping a 2 KiB copy would count as 2,100 instructions
# where the vector loop that smaller sizes use counts about 70, for much the same time. These
# tunables keep glibc on its vector loops at every size, for every stack alike, so that the counts
# compare the work done. Set VAULT_BENCH_GLIBC_DEFAULTS=1 to count with glibc's defaults.
if [ -z "${VAULT_BENCH_GLIBC_DEFAULTS:-}" ]; then
    GLIBC_TUNABLES=glibc.cpu.x86_rep_stosb_threshold=0x7fffffff:glibc.cpu.x86_rep_movsb_threshold=0x7fffffff
    export GLIBC_TUNABLES
fi

stacks=${*:-"bare set_request_header set_request_header_runtime add_authorization rwlock_format vault_auth vault_auth_no_replay
set_request_header_full_body vault_auth_full_body vault_auth_no_replay_full_body
set_request_header_boxed_body vault_auth_boxed_body set_request_header_boxed_empty vault_auth_boxed_empty
set_request_header_success_response set_request_header_runtime_success_response vault_auth_success_response"}

bin=$(cargo bench --bench hot_path --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*hot_path[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not build the hot_path bench" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for stack in $stacks; do
    HOT_PATH_PROFILE=1 valgrind --tool=callgrind --toggle-collect='*profiled_call*' \
        --callgrind-out-file="$out/$stack.out" \
        "$bin" --bench --profile-time 1 "^per_request/$stack\$" >/dev/null 2>&1
    # Total collected instructions, and the calls into profiled_call (callgrind names a function
    # in full once, then by its number).
    awk '
        /^totals:/ { total = $2 }
        /^c?fn=\([0-9]+\) .*profiled_call/ { match($0, /\([0-9]+\)/); id = substr($0, RSTART, RLENGTH) }
        /^cfn=\(/ { match($0, /\([0-9]+\)/); want = (id != "" && substr($0, RSTART, RLENGTH) == id); next }
        /^calls=/ { if (want) { split($1, c, "="); calls += c[2] } want = 0 }
        END { if (calls > 0) printf "%.0f", total / calls }
    ' "$out/$stack.out" >"$out/$stack.per"
done

# The stack each one is compared with: SetRequestHeader on the same request and response.
baseline() {
    case $1 in
    *_full_body) echo set_request_header_full_body ;;
    *_boxed_body) echo set_request_header_boxed_body ;;
    *_boxed_empty) echo set_request_header_boxed_empty ;;
    *_success_response) echo set_request_header_runtime_success_response ;;
    *) echo set_request_header_runtime ;;
    esac
}

results=${CARGO_TARGET_DIR:-target}/bench-results
mkdir -p "$results"
: >"$out/hot_path.tsv"
echo "| stack | instructions / request | baseline | ratio to the baseline |"
echo "|---|---:|---|---:|"
for stack in $stacks; do
    per=$(cat "$out/$stack.per")
    base_stack=$(baseline "$stack")
    base_file="$out/$base_stack.per"
    base=$( [ -f "$base_file" ] && cat "$base_file" || true)
    if [ -n "$per" ] && [ -n "$base" ]; then
        ratio=$(awk -v a="$per" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    else
        ratio="—"
    fi
    echo "| $stack | ${per:-—} | $base_stack | $ratio |"
    printf '%s\t%s\t%s\t%s\n' "$stack" "$per" "$base_stack" "$base" >>"$out/hot_path.tsv"
done
mv "$out/hot_path.tsv" "$results/hot_path.tsv"
