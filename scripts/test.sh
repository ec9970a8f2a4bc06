#!/usr/bin/env bash
# Sets up the services (scripts/setup.sh), then runs every test of the
# workspace: unit tests beside the code and the integration tests in
# tests/integration against real Redis, SecantusDB, the push sandbox and,
# for the dashboard, headless Chromium.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh --tests
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --workspace --locked "$@"
