#!/bin/sh
# Instructions per request for each stack of the end_to_end bench, counted by callgrind: client
# and server together, user space only (the kernel's loopback work is not counted).
#
# The bench binary sends its requests through one stack inside `profiled_requests`
# (benches/end_to_end.rs) when END_TO_END_PROFILE names the stack; callgrind collects only inside
# it, and the count is divided by the number of requests.
#
# Usage: scripts/end_to_end_instructions.sh [stack ...]    (default: all four)
# Needs valgrind. Takes about a minute.
set -eu
cd "$(dirname "$0")/.."

stacks=${*:-"client set_request_header_runtime vault_auth vault_auth_no_replay"}

bin=$(cargo bench --bench end_to_end --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*end_to_end[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "could not build the end_to_end bench" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "| stack | instructions / request | over the client alone |"
echo "|---|---:|---:|"
for stack in $stacks; do
    requests=$(END_TO_END_PROFILE=$stack valgrind --tool=callgrind --toggle-collect='*profiled_requests*' \
        --callgrind-out-file="$out/$stack.out" "$bin" --bench 2>/dev/null |
        sed -n 's/.*: \([0-9]*\) requests$/\1/p')
    per=$(awk -v n="$requests" '/^totals:/ { printf "%.0f", $2 / n }' "$out/$stack.out")
    [ "$stack" = client ] && client=$per
    over=$([ -n "${client:-}" ] && echo $((per - client)) || echo "—")
    echo "| $stack | $per | $over |"
done
