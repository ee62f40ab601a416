#!/bin/sh
# Instructions per request for each stack of the end_to_end bench, counted by callgrind: client
# and server together, user space only (the kernel's loopback work is not counted).
#
# The bench binary sends its requests through one stack inside `profiled_requests`
# (benches/end_to_end.rs) when END_TO_END_PROFILE names the stack; callgrind collects only inside
# it, and the count is divided by the number of requests the binary reports.
#
# Usage: scripts/end_to_end_instructions.sh [stack ...]
#        (default: every stack; each is compared with the client alone sending the same request:
#        `client`, `client_boxed_post` or `client_boxed_stream`)
# Needs valgrind. Takes about ten seconds once the bench is built (the first build takes a few
# minutes).
set -eu
cd "$(dirname "$0")/.."

stacks=${*:-"client set_request_header_runtime vault_auth vault_auth_no_replay
client_boxed_post set_request_header_runtime_boxed_post vault_auth_boxed_post
client_boxed_stream set_request_header_runtime_boxed_stream vault_auth_boxed_stream"}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if ! cargo bench --bench end_to_end --no-run --message-format=json >"$out/build.json"; then
    echo "could not build the end_to_end bench (cargo's errors are above)" >&2
    exit 1
fi
bin=$(sed -n 's/.*"executable":"\([^"]*end_to_end[^"]*\)".*/\1/p' "$out/build.json" | tail -n 1)
[ -x "$bin" ] || { echo "cargo built no end_to_end bench binary" >&2; exit 1; }

echo "| stack | instructions / request | over the client alone |"
echo "|---|---:|---:|"
for stack in $stacks; do
    if ! END_TO_END_PROFILE=$stack valgrind --tool=callgrind --toggle-collect='*profiled_requests*' \
        --log-file="$out/$stack.log" --callgrind-out-file="$out/$stack.out" \
        "$bin" --bench >"$out/$stack.stdout"; then
        echo "the bench failed for $stack; valgrind's log:" >&2
        cat "$out/$stack.log" >&2
        exit 1
    fi
    requests=$(sed -n 's/.*: \([0-9][0-9]*\) requests$/\1/p' "$out/$stack.stdout")
    per=$(awk -v n="${requests:-0}" '/^totals:/ && n > 0 { printf "%.0f", $2 / n }' "$out/$stack.out")
    case $per in
    '' | 0 | *[!0-9]*)
        echo "no instructions were collected for $stack (requests: ${requests:-none})" >&2
        exit 1
        ;;
    esac
    case $stack in
    *_boxed_post) kind=post ;;
    *_boxed_stream) kind=stream ;;
    *) kind=get ;;
    esac
    case $stack in
    client*)
        eval "client_$kind=$per"
        over="—"
        ;;
    *)
        base=$(eval "echo \${client_$kind:-}")
        if [ -n "$base" ]; then over="+$((per - base))"; else over="—"; fi
        ;;
    esac
    echo "| $stack | $per | $over |"
done
