#!/usr/bin/env bash
# Runs Larder's whole test suite on a fresh Debian machine: installs what the tests need
# (Chromium from apt, Node.js packages from npm, the S3 suite's Python packages from PyPI into
# tests/s3/.venv), builds, then runs the Rust unit and integration tests, the browser
# end-to-end tests, and the S3 proxy suite with real clients (last: its pytest exit code is the
# script's). Set CARGO_TARGET_DIR to reuse a build cache.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The S3 suite's virtualenv (Debian's python3 needs python3-venv for `python3 -m venv`).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== Python test tools (boto3, aws cli, moto_server, DuckDB, the MCP SDK) in tests/s3/.venv"
python3 -m venv tests/s3/.venv
tests/s3/.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -r tests/s3/requirements.txt -r tests/mcp/requirements.txt
# moto_server (an upstream S3 for the s3 backend, the range cache and Settings tests), boto3
# and the aws cli come from there for every test below.
export PATH="$PWD/tests/s3/.venv/bin:$PATH"

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

echo "== OAuth authorization server with the official MCP Python SDK"
LARDER_BIN="$target/debug/larder" python -m pytest tests/mcp -q

echo "== S3 proxy with real clients (boto3, aws cli, DuckDB httpfs; moto_server upstream)"
LARDER_BIN="$target/debug/larder" python -m pytest tests/s3 -q
