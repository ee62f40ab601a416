#!/usr/bin/env bash
# The soak under faults (examples/soak.rs): many tasks through one layer while tokens are revoked
# and expire, the source fails and hangs, and the token file is rewritten. Minutes, not CI.
#
# Usage: scripts/soak.sh [seconds, default 60]      SOAK_SEED=<n> repeats a run.
# Prints a summary and exits non-zero on any breach.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --example soak --features tracing -- "${1:-60}"
