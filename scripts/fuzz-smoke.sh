#!/usr/bin/env bash
# CI smoke of the fuzz targets: a few seconds each (FUZZ_SMOKE_SECONDS, default 5).
#
# Runs only where the nightly toolchain and cargo-fuzz can be had: it installs what is missing,
# and if that fails it says so and exits 0 (a machine without nightly is not a failed build).
# It fails on a crash, and when the targets no longer build against the library.
# FUZZ_SMOKE=skip skips it outright.
#
# Cost, measured on the project's 2-core VM (shared with other builds, so upper bounds):
# installing cargo-fuzz from source about 3 minutes, the first optimized build of the targets
# about 6 minutes (later builds reuse fuzz/target), then 5 targets x FUZZ_SMOKE_SECONDS.
# Caching ~/.cargo/bin and fuzz/target between CI runs removes the first two.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SMOKE_SECONDS:-5}
skip() {
  echo "fuzz smoke: SKIPPED: $*"
  exit 0
}
[ "${FUZZ_SMOKE:-}" = skip ] && skip "FUZZ_SMOKE=skip"
command -v rustup >/dev/null 2>&1 || skip "no rustup, so no nightly toolchain"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz smoke: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 ||
    skip "the nightly toolchain cannot be installed here"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: installing cargo-fuzz (from source: minutes)"
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || skip "cargo-fuzz cannot be installed here"
fi
echo "fuzz smoke: $(rustup run nightly rustc --version), $(cargo +nightly fuzz --version)"
# From here on, a failure is the code's: the targets do not build, or one crashed.
exec scripts/fuzz.sh "$seconds"
