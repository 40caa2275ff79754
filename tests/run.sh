#!/usr/bin/env bash
# Runs Larder's whole test suite on a fresh Debian machine: installs what the tests need
# (Chromium from apt, Node.js packages from npm), builds, then runs the Rust unit and integration
# tests and the browser end-to-end tests. Set CARGO_TARGET_DIR to reuse a build cache.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target"

echo "== building (browser assets are built by npm through build.rs)"
cargo build --workspace --all-targets --locked

echo "== Rust unit and integration tests"
cargo test --workspace --locked

echo "== browser end-to-end tests (headless Chromium)"
(
  cd tests/e2e
  npm ci --no-audit --no-fund --loglevel=error
  E2E_LARDER_BIN="$target/debug/larder" npm test
)
