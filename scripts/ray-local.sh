#!/usr/bin/env bash
# A single-node Ray head on loopback for tests and demos, with the Jobs API on the dashboard.
#
#   scripts/ray-local.sh install            pip install the `ray` extra of pyproject.toml into the
#                                           venv of $PYTHON (default .venv/bin/python)
#   scripts/ray-local.sh start DIR          start `ray start --head --block` in the background
#   scripts/ray-local.sh stop DIR           TERM the head started by `start DIR` (never `ray stop`:
#                                           that kills every Ray process on the machine by name)
#
# Environment for `start`: PYTHON (its venv holds ray; default .venv/bin/python), RAY_GCS_PORT
# (6380), RAY_DASHBOARD_PORT (8265), RAY_CLIENT_PORT (10001), RAY_AGENT_PORT (52365),
# RAY_FAKE_GPUS (8: declared to Ray both as GPUs and as the custom resource named by
# RAY_GPU_RESOURCE, default H100), RAY_NUM_CPUS (2).
# The head's PATH and cwd are what job entrypoints run with: the venv goes first on PATH, and the
# cwd is DIR (a `ray/` folder in the cwd would shadow the package).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

PYTHON=$(command -v "${PYTHON:-$ROOT/.venv/bin/python}")
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" # absolute: `start` changes dir

install_ray() {
  # The requirement strings come from pyproject.toml, so the extra is defined in one place;
  # installing them directly leaves the project's own (editable) install untouched.
  local reqs
  reqs=$("$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["ray"]))' "$ROOT/pyproject.toml")
  mapfile -t reqs <<<"$reqs"
  "$PYTHON" -m pip install -q "${reqs[@]}"
}

start() {
  local D=$1
  local ray
  ray="$(dirname "$PYTHON")/ray"
  local gcs=${RAY_GCS_PORT:-6380} dash=${RAY_DASHBOARD_PORT:-8265}
  local client=${RAY_CLIENT_PORT:-10001} agent=${RAY_AGENT_PORT:-52365}
  local gpus=${RAY_FAKE_GPUS:-8} res=${RAY_GPU_RESOURCE:-H100} cpus=${RAY_NUM_CPUS:-2}
  mkdir -p "$D"
  cd "$D"
  export PATH="$(dirname "$ray"):$PATH"
  # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray take 127.0.0.1 as the node address and bind
  # its ports to loopback (--node-ip-address alone is silently replaced).
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 setsid "$ray" start --head --block --port="$gcs" \
    --dashboard-host=127.0.0.1 --dashboard-port="$dash" --ray-client-server-port="$client" \
    --dashboard-agent-listen-port="$agent" --num-cpus="$cpus" --num-gpus="$gpus" \
    --resources="{\"$res\": $gpus}" --disable-usage-stats --temp-dir="$D/tmp" \
    >"$D/head.log" 2>&1 </dev/null &
  echo $! >"$D/head.pid"
  # Ready when the dashboard lists the head node alive (it answers /api/version seconds
  # before the node has registered, and jobs need the node).
  local probe="import json, sys, urllib.request
url = 'http://127.0.0.1:$dash/api/v0/nodes'
nodes = json.load(urllib.request.urlopen(url, timeout=2))['data']['result']['result']
sys.exit(0 if any(n['state'] == 'ALIVE' for n in nodes) else 1)"
  for _ in $(seq 1 300); do
    if "$PYTHON" -c "$probe" 2>/dev/null; then
      return 0
    fi
    kill -0 "$(cat "$D/head.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "ray head did not come up; see $D/head.log" >&2
  return 1
}

# Whether any live (non-zombie) process is left in the head's session.
session_alive() { ps -o stat= -s "$1" 2>/dev/null | grep -qv '^Z'; }

stop() {
  local D=$1 pid
  [ -s "$D/head.pid" ] || return 0
  pid=$(cat "$D/head.pid")
  # TERM only the `ray start --block` process: it stops its raylet, GCS and dashboard in
  # order (TERMing them all at once leaves it hanging on a dead GCS).
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do session_alive "$pid" || return 0; sleep 0.1; done
  # setsid made the head a session and group leader: KILL whatever is left of it.
  kill -KILL -- "-$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) install_ray ;;
  start) start "${2:?usage: $0 start DIR}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
