"""The agent's journal holds lease tokens and commands: it is the owner's alone (D9)."""

from __future__ import annotations

import stat
from pathlib import Path

from suanli.agent.exchange import Lease
from suanli.agent.journal import FILE, Journal

LEASE = Lease(
    allocation_id="alloc-1",
    lease_token="tok-secret",
    kind="job",
    item_id="job-1",
    pool_id="site/h100",
    gpu="H100",
    gpus=1,
    nodes=1,
    command="python train.py --api-key=secret",
    image=None,
    planned_h=1.0,
)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_new_journal_and_its_folder_are_private(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    j = Journal(state)
    j.hold(LEASE)
    j.close()
    assert _mode(state) == 0o700
    assert _mode(state / FILE) == 0o600
    assert _mode(state / "agent.lock") == 0o600


def test_an_old_world_readable_journal_is_made_private(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    (tmp_path / FILE).chmod(0o644)
    (tmp_path / FILE.replace(".jsonl", ".tmp")).touch(0o644)  # a stale rewrite
    j = Journal(tmp_path)
    j.hold(LEASE)
    j.close()
    assert _mode(tmp_path / FILE) == 0o600
    assert "tok-secret" in (tmp_path / FILE).read_text()
