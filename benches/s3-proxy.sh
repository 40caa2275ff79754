#!/usr/bin/env bash
# Benchmark of Larder's S3 proxy against loopback baselines measured in the same run.
#
#   benches/s3-proxy.sh [--no-build] [--quick] [--rounds N] [--only get,put,...] [--json FILE]
#
# Builds the release binary (CARGO_TARGET_DIR, default /work/target if it exists, else
# ./target; LARDER_BIN=path skips the build), installs what is missing (nginx, curl via apt;
# boto3, requests, moto[server] via pip), starts on 127.0.0.1 only: `larder serve` (temp data
# dir), nginx in the foreground (sendfile, WebDAV PUT) and moto_server, then runs
# benches/s3_proxy_bench.py, which prints one table of Larder vs baseline with ratios.
# Everything it started and wrote is removed on exit, failure or Ctrl-C.
#
# Extra LARDER_* variables in the environment are passed to `larder serve` (for example to
# configure the range cache of `s3` backends); the ones set below win.
# BENCH_LARDER_LD_PRELOAD, for experiments only, is passed to `larder serve` as LD_PRELOAD.
# BENCH_TMPDIR picks where the scratch directory goes (default: $TMPDIR or /tmp); the
# filesystem there is the one measured.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BUILD=1
PYARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --quick) PYARGS+=(--quick) ;;
        --rounds) PYARGS+=(--rounds "$2"); shift ;;
        --only) PYARGS+=(--only "$2"); shift ;;
        --json) PYARGS+=(--json "$(realpath -m "$2")"); shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PY=${PYTHON:-python3}

# --- what it needs ----------------------------------------------------------------------------
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
if [[ ${#need_apt[@]} -gt 0 ]]; then
    say "installing ${need_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${need_apt[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ! "$PY" -c 'import boto3, requests, moto.server' 2>/dev/null; then
    say "installing boto3 requests moto[server] (pip)"
    "$PY" -m pip install -q boto3 requests 'moto[server]'
fi

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

# --- scratch space and cleanup ----------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/larder-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Children first (the driver's curl processes), then the processes themselves.
    for pid in "${PIDS[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for f in larder.log nginx/error.log moto.log; do
            [[ -s "$WORK/$f" ]] && { echo "--- tail of $f" >&2; tail -n 30 "$WORK/$f" >&2; }
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # what, seconds, command...
    local what=$1 secs=$2; shift 2
    for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "timed out waiting for $what" >&2; return 1
}
alive() { kill -0 "$1" 2>/dev/null || { echo "$2 exited early" >&2; return 1; }; }

# --- Larder -----------------------------------------------------------------------------------
DATA=$WORK/data
say "starting larder serve ($LARDER_BIN)"
larder_env=(PATH="$PATH" HOME="$WORK")
while IFS= read -r var; do larder_env+=("$var"); done < <(env | grep '^LARDER_' | grep -v '^LARDER_BIN=' || true)
[[ -n "${BENCH_LARDER_LD_PRELOAD:-}" ]] && larder_env+=(LD_PRELOAD="$BENCH_LARDER_LD_PRELOAD")
larder_env+=(LARDER_DATA_DIR="$DATA" LARDER_HTTP__ADDR=127.0.0.1:0 LARDER_S3__ADDR=127.0.0.1:0 RUST_LOG=warn)
env -i "${larder_env[@]}" "$LARDER_BIN" serve >"$WORK/larder.log" 2>&1 &
LARDER_PID=$!
PIDS+=("$LARDER_PID")
for _ in $(seq 600); do
    alive "$LARDER_PID" larder
    [[ -s "$DATA/login-url" ]] && break
    sleep 0.1
done
[[ -s "$DATA/login-url" ]] || { echo "timed out waiting for larder's login-url" >&2; exit 1; }

# --- nginx ------------------------------------------------------------------------------------
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx" "$WORK/www/put"
# GETs read the files Larder stores (its users' local backends); PUTs land on this filesystem.
ln -s "$DATA/storage/users" "$WORK/www/get"
user_line=""
[[ $(id -u) == 0 ]] && user_line="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
$user_line
worker_processes $(nproc);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
        location /put/ {
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }
    }
}
EOF
say "starting nginx on 127.0.0.1:$NGINX_PORT"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout.log" 2>&1 &
PIDS+=($!)
wait_for nginx 30 curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/"

# --- moto_server ------------------------------------------------------------------------------
MOTO_PORT=$(free_port)
say "starting moto_server on 127.0.0.1:$MOTO_PORT"
(cd "$WORK" && exec env AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
    "$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1) &
PIDS+=($!)
wait_for moto_server 60 curl -sf -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/"

# --- the environment --------------------------------------------------------------------------
{
    echo "Environment"
    echo "  nproc:      $(nproc)   ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs))"
    echo "  memory:     $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')"
    echo "  kernel:     $(uname -sr)"
    echo "  filesystem: $(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1 " (mounted at " $7 ")"}') for $WORK"
    echo "  load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
    echo "  larder:     $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') $LARDER_BIN"
    echo "  baselines:  $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(curl --version | head -1 | cut -d' ' -f1-2), moto $("$PY" -c 'import moto; print(moto.__version__)')"
    echo
} >"$WORK/env.txt"

say "running the benchmark"
# In the background and waited for, so a signal to this script is handled at once.
"$PY" "$HERE/s3_proxy_bench.py" --work "$WORK/run" --data-dir "$DATA" \
    --login-url-file "$DATA/login-url" --larder-pid "$LARDER_PID" \
    --nginx-url "http://127.0.0.1:$NGINX_PORT" --nginx-root "$WORK/www" \
    --moto-url "http://127.0.0.1:$MOTO_PORT" ${PYARGS[@]+"${PYARGS[@]}"} >"$WORK/table.txt" &
DRIVER_PID=$!
PIDS=("$DRIVER_PID" "${PIDS[@]}")
wait "$DRIVER_PID"
alive "$LARDER_PID" larder
echo
cat "$WORK/env.txt" "$WORK/table.txt"
