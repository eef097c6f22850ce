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
# install). Needs root for apt-get and network access to the Debian mirror and PyPI.
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
  "postgresql $(have pg_ok) (not installed here)," \
  "traces at $traces $(have test -d "$traces") (not installed here)"
