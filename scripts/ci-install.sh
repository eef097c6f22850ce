#!/usr/bin/env bash
# Install what the cluster and sandbox tests need, so that none of them skips (the test
# fixtures only start services; they never install anything). Idempotent: what is present
# is left alone. `.ci/run` calls it; run it by hand (as root) before `make test` to run
# every tier here too.
#
#   scripts/ci-install.sh        install what is missing, then say what the tests will find
#
# Installs: Debian packages munge, slurmctld, slurmd, slurm-client (scripts/slurm-local.sh
# install) and bubblewrap (the sandbox of the `local` backend), and the `ray` extra of
# pyproject.toml into the venv of $PYTHON (default .venv/bin/python; scripts/ray-local.sh
# install), and its `serve` extra (llama-cpp-python[server], the real inference engine of
# the engine and gateway tests: compiled from source, several minutes on 2 cores; g++ from
# Debian when missing). A failed engine build does not stop this script: the tests that
# need it then fail under CI=true (resource "llama" in tests/conftest.py), saying why.
# Needs root for apt-get and network access to the Debian mirror and PyPI.
# Not installed, only checked: PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`;
# or SUANLI_TEST_PG_URL) and the public traces (../shared/traces or SUANLI_TRACES_DIR).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
export PATH="$PATH:/usr/sbin:/sbin"

debs_missing() { local p; for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done; }

need_root() {
  [ "$(id -u)" = 0 ] || { echo "ci-install: installing $* needs root (apt-get)" >&2; exit 1; }
}

apt_install() {
  need_root "$@"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

if [ ! -x "$PYTHON" ]; then
  echo "ci-install: no venv python at $PYTHON; run \`make setup\` first" >&2
  exit 1
fi

missing=$(debs_missing munge slurmctld slurmd slurm-client | xargs)
if [ -n "$missing" ]; then
  need_root "$missing"
  echo "ci-install: Slurm: installing $missing"
  bash "$ROOT/scripts/slurm-local.sh" install
fi

if [ -n "$(debs_missing bubblewrap)" ]; then
  echo "ci-install: installing bubblewrap"
  apt_install bubblewrap
fi

if [ ! -x "$(dirname "$PYTHON")/ray" ]; then
  echo "ci-install: installing the \`ray\` extra into $(dirname "$(dirname "$PYTHON")")"
  bash "$ROOT/scripts/ray-local.sh" install
fi

llama_ok() { "$PYTHON" -c 'import llama_cpp, llama_cpp.server.app' >/dev/null 2>&1; }

# llama-cpp-python is only on PyPI as source: its wheel is built once into a wheelhouse
# (SUANLI_WHEELHOUSE, default ~/.cache/suanli/wheels) and taken from there afterwards, so
# that a new venv on the same machine installs in seconds (pip's own wheel cache is keyed
# by download URL and misses a wheel built from another copy of the same sdist).
WHEELHOUSE=${SUANLI_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/suanli/wheels}

install_serve() {
  # The requirement strings come from pyproject.toml (the extra is defined in one place);
  # a portable CPU build (no -march=native), without llama.cpp's tests and examples.
  local reqs
  reqs=$("$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["serve"]))' "$ROOT/pyproject.toml")
  mapfile -t reqs <<<"$reqs"
  mkdir -p "$WHEELHOUSE"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PYTHON" -m pip wheel -q --no-deps \
    --find-links "$WHEELHOUSE" -w "$WHEELHOUSE" "${reqs[0]}" || return 1  # llama-cpp-python
  "$PYTHON" -m pip install -q --find-links "$WHEELHOUSE" "${reqs[@]}"
}

if ! llama_ok; then
  if ! command -v g++ >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "ci-install: installing g++ (to compile llama.cpp)"
    apt_install g++ || echo "ci-install: could not install g++" >&2
  fi
  echo "ci-install: installing the \`serve\` extra (compiles llama.cpp: minutes)"
  install_serve || echo "ci-install: the \`serve\` extra did not install; its tests will fail" >&2
fi

# What the tests will find (tests/conftest.py probes the same things, and under CI=true
# fails on anything missing).
have() { if "$@" >/dev/null 2>&1; then echo yes; else echo NO; fi; }
programs() { local p; for p in "$@"; do command -v "$p" || return 1; done; }
pg_ok() {
  "$PYTHON" - <<'PY'
import os, sys
import psycopg
urls = [os.environ["SUANLI_TEST_PG_URL"]] if os.environ.get("SUANLI_TEST_PG_URL") else [
    "postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test"]
for url in urls:
    try:
        psycopg.connect(url, connect_timeout=2).close()
        sys.exit(0)
    except psycopg.Error:
        pass
sys.exit(1)
PY
}
traces=${SUANLI_TRACES_DIR:-$(dirname "$ROOT")/shared/traces}
echo "ci-install: slurm $(have programs munged slurmctld slurmd sbatch scontrol sinfo)," \
  "bubblewrap $(have /usr/bin/bwrap --ro-bind / / --unshare-all --die-with-parent true)," \
  "ray $(have test -x "$(dirname "$PYTHON")/ray")," \
  "llama $(have llama_ok)," \
  "postgresql $(have pg_ok) (not installed here)," \
  "traces at $traces $(have test -d "$traces") (not installed here)"
