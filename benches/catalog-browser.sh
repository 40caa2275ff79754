#!/usr/bin/env bash
# Benchmark of Larder's catalog in the browser against baselines measured in the same run.
#
#   benches/catalog-browser.sh [--no-build] [--quick] [--rounds N] [--tables N] [--rows N]
#                              [--sockets N] [--commits N] [--json FILE]
#
# Builds the release binary (CARGO_TARGET_DIR, default /work/target if it exists, else
# ./target; LARDER_BIN=path skips the build), installs what is missing (chromium, nodejs, npm via
# apt; duckdb via pip; playwright-core and ws via `npm ci` in benches/), starts `larder serve` on
# 127.0.0.1 with a temporary data dir, then runs benches/catalog_browser.mjs, which drives
# headless Chromium and WebSocket clients against it and prints one table:
#   - N tables (default 500: CSV and Parquet) registered by a fresh tab vs native DuckDB doing
#     the same on the same files (target: < 1 s);
#   - a large Parquet table (default 1,000,000 rows) over the Arrow path into the tab vs native
#     DuckDB reading it locally;
#   - commit → WebSocket frame latency with S sockets (default 200) open for one user vs the
#     commit's own HTTP round trip and vs one socket (target: < 100 ms).
# Everything it started and wrote is removed on exit, failure or Ctrl-C.
#
# BENCH_TMPDIR picks where the scratch directory goes (default: $TMPDIR or /tmp).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BUILD=1
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --quick) ARGS+=(--quick) ;;
        --rounds|--tables|--rows|--sockets|--commits) ARGS+=("$1" "$2"); shift ;;
        --json) ARGS+=(--json "$(realpath -m "$2")"); shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PY=${PYTHON:-python3}

# --- what it needs ----------------------------------------------------------------------------
need_apt=()
command -v chromium >/dev/null || [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [[ ${#need_apt[@]} -gt 0 ]]; then
    say "installing ${need_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${need_apt[@]}" >/dev/null; }
fi
if ! "$PY" -c 'import duckdb' 2>/dev/null; then
    # The version the S3 suite pins (tests/s3/requirements.txt), a release of DuckDB-WASM's line.
    say "installing duckdb (pip)"
    "$PY" -m pip install -q duckdb==1.4.4
fi
say "npm ci in benches/ (playwright-core, ws)"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)

# --- the binary -------------------------------------------------------------------------------
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if [[ -d /work/target ]]; then CARGO_TARGET_DIR=/work/target; else CARGO_TARGET_DIR=$REPO/target; fi
fi
export CARGO_TARGET_DIR
if [[ -n "${LARDER_BIN:-}" ]]; then
    BUILD=0
else
    LARDER_BIN=$CARGO_TARGET_DIR/release/larder
fi
if [[ $BUILD == 1 ]]; then
    say "cargo build --release (target dir $CARGO_TARGET_DIR; waits if another build holds it)"
    (cd "$REPO" && cargo build --release --bin larder)
fi
[[ -x "$LARDER_BIN" ]] || { echo "no binary at $LARDER_BIN (build it, or set LARDER_BIN)" >&2; exit 1; }
LARDER_BIN=$(realpath "$LARDER_BIN")

# --- scratch space and cleanup ----------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/larder-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Children first (Chromium under the driver), then the processes themselves.
    for pid in "${PIDS[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 && -s "$WORK/larder.log" ]]; then
        echo "--- tail of larder.log" >&2; tail -n 30 "$WORK/larder.log" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
alive() { kill -0 "$1" 2>/dev/null || { echo "$2 exited early" >&2; return 1; }; }

# --- Larder -----------------------------------------------------------------------------------
DATA=$WORK/data
say "starting larder serve ($LARDER_BIN)"
env -i PATH="$PATH" HOME="$WORK" LARDER_DATA_DIR="$DATA" LARDER_HTTP__ADDR=127.0.0.1:0 \
    LARDER_S3__ADDR=127.0.0.1:0 RUST_LOG=warn "$LARDER_BIN" serve >"$WORK/larder.log" 2>&1 &
LARDER_PID=$!
PIDS+=("$LARDER_PID")
for _ in $(seq 600); do
    alive "$LARDER_PID" larder
    [[ -s "$DATA/login-url" ]] && break
    sleep 0.1
done
[[ -s "$DATA/login-url" ]] || { echo "timed out waiting for larder's login-url" >&2; exit 1; }

# --- the environment --------------------------------------------------------------------------
{
    echo "Environment"
    echo "  nproc:      $(nproc)   ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs))"
    echo "  memory:     $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')"
    echo "  kernel:     $(uname -sr)"
    echo "  filesystem: $(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1 " (mounted at " $7 ")"}') for $WORK"
    echo "  load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
    echo "  larder:     $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') $LARDER_BIN"
    echo "  browser:    $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)"
    echo
} >"$WORK/env.txt"

say "running the benchmark"
# In the background and waited for, so a signal to this script is handled at once.
node "$HERE/catalog_browser.mjs" --work "$WORK/run" --data-dir "$DATA" \
    --login-url-file "$DATA/login-url" --larder-bin "$LARDER_BIN" --python "$PY" \
    ${ARGS[@]+"${ARGS[@]}"} >"$WORK/table.txt" &
DRIVER_PID=$!
PIDS=("$DRIVER_PID" "${PIDS[@]}")
wait "$DRIVER_PID"
alive "$LARDER_PID" larder
cat "$WORK/env.txt" "$WORK/table.txt"
