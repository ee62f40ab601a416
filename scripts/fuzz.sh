#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for the given time.
#
# Usage: scripts/fuzz.sh [seconds per target, default 60] [target ...]   (default: all targets)
# Targets: token (AccessToken validation), detect (rejection detection), replay (the replay copy
# and rebuild), origin (the Vault origin check), standin (the Vault stand-in's request parsing:
# routes, credentials, form and JSON bodies, revoke id lists, VQL).
#
# Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz --locked
# Each target keeps its corpus in fuzz/corpus/<target> (not committed) and grows it run after
# run; a crash leaves its input in fuzz/artifacts/<target>/ and makes this script exit non-zero
# (replay it with `cargo +nightly fuzz run -O <target> <file>`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=${*:-"token detect replay origin standin"}
# Each run's own cap on memory (libFuzzer's default is 2 GiB).
rss_mb=${FUZZ_RSS_MB:-1024}

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz (see the top of this script)" >&2
  exit 2
fi

cargo +nightly fuzz build -O
failed=""
for target in $targets; do
  mkdir -p "corpus/$target"
  printf '\n==> fuzz %s for %ss\n' "$target" "$seconds"
  if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -print_final_stats=1; then
    failed="$failed $target"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz.sh: crashes in:$failed (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crash in $targets (${seconds}s each)"
