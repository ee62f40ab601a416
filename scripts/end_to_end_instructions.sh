#!/bin/sh
# Instructions per request for each stack of the end_to_end bench, counted by callgrind: client
# and server together, user space only (the kernel's loopback work is not counted).
#
# The bench binary sends its requests through one stack inside `profiled_requests`
# (benches/end_to_end.rs) when END_TO_END_PROFILE names the stack; callgrind collects only inside
# it, and the count is divided by the number of requests the binary reports.
#
# Each stack is compared with the client alone sending the same request: a stack's name is a
# base (`client`, `set_request_header_runtime`, `vault_auth`, `vault_auth_no_replay`) and a
# request shape (nothing: an empty GET; `_post`: a 2 KiB JSON POST as `Full<Bytes>`;
# `_boxed_post`: the same POST boxed; `_boxed_stream`: the same as a boxed stream of unknown
# length), and its baseline is `client` with the same shape.
#
# Prints a table, then per shape the issue's figure: what VaultAuth adds over what
# SetRequestHeader (run-time value) adds, as a share of the client alone,
# (vault_auth - set_request_header_runtime) / client * 100 (target: at most 1.0 %). Writes
# `target/bench-results/end_to_end.tsv` (under CARGO_TARGET_DIR when set), one line per stack:
# stack, instructions, baseline stack, baseline instructions (`-` when the baseline was not run).
#
# Usage: scripts/end_to_end_instructions.sh [stack ...]   (default: every stack)
# Needs valgrind. Takes one to two minutes once the bench is built (the first build takes a few
# minutes).
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

stacks=${*:-"client set_request_header_runtime vault_auth vault_auth_no_replay
client_post set_request_header_runtime_post vault_auth_post
client_boxed_post set_request_header_runtime_boxed_post vault_auth_boxed_post
client_boxed_stream set_request_header_runtime_boxed_stream vault_auth_boxed_stream"}
shapes="get post boxed_post boxed_stream"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
results=${CARGO_TARGET_DIR:-target}/bench-results

# The shape of a stack, from its name's suffix.
shape() {
    case $1 in
    *_boxed_post) echo boxed_post ;;
    *_boxed_stream) echo boxed_stream ;;
    *_post) echo post ;;
    *) echo get ;;
    esac
}

# The name of `base` sending requests of shape `$2`.
named() {
    case $2 in
    get) echo "$1" ;;
    *) echo "$1_$2" ;;
    esac
}

# The count of a stack already measured, or nothing.
count() {
    eval "echo \${count_$1:-}"
}

for stack in $stacks; do
    case $stack in
    '' | *[!a-z_]*)
        echo "not a stack name: $stack" >&2
        exit 1
        ;;
    esac
done

if ! cargo bench --bench end_to_end --no-run --message-format=json >"$out/build.json"; then
    echo "could not build the end_to_end bench (cargo's errors are above)" >&2
    exit 1
fi
bin=$(sed -n 's/.*"executable":"\([^"]*end_to_end[^"]*\)".*/\1/p' "$out/build.json" | tail -n 1)
[ -x "$bin" ] || { echo "cargo built no end_to_end bench binary" >&2; exit 1; }

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
    eval "count_$stack=$per"
done

mkdir -p "$results"
: >"$out/end_to_end.tsv"
echo "| stack | instructions / request | over the client alone |"
echo "|---|---:|---:|"
for stack in $stacks; do
    per=$(count "$stack")
    baseline=$(named client "$(shape "$stack")")
    base=$(count "$baseline")
    case $stack in
    client*) over="—" ;;
    *) if [ -n "$base" ]; then over="+$((per - base))"; else over="—"; fi ;;
    esac
    echo "| $stack | $per | $over |"
    printf '%s\t%s\t%s\t%s\n' "$stack" "$per" "$baseline" "${base:--}" >>"$out/end_to_end.tsv"
done
cp "$out/end_to_end.tsv" "$results/end_to_end.tsv"

echo
echo "| request | client alone | SetRequestHeader adds | VaultAuth adds | (VaultAuth − SetRequestHeader) / client | target ≤ 1.0 % |"
echo "|---|---:|---:|---:|---:|---|"
for shape in $shapes; do
    client=$(count "$(named client "$shape")")
    header=$(count "$(named set_request_header_runtime "$shape")")
    vault=$(count "$(named vault_auth "$shape")")
    [ -n "$client" ] && [ -n "$header" ] && [ -n "$vault" ] || continue
    awk -v shape="$shape" -v c="$client" -v h="$header" -v v="$vault" 'BEGIN {
        share = (v - h) / c * 100
        printf "| %s | %d | +%d | +%d | %.2f %% | %s |\n", shape, c, h - c, v - c, share,
            (share <= 1.0 ? "met" : "missed")
    }'
done
echo
echo "Written: $results/end_to_end.tsv"
