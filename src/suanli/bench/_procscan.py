"""Who is still running, from Linux ``/proc``: processes by an environment variable, a
process's descendants, which of some pids are alive. Zombies count as gone (they hold
nothing and wait only for a parent to reap them)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["alive", "descendants", "with_env"]

_PROC = Path("/proc")


def _stat(pid: str) -> list[str] | None:
    """The fields after the command name, or None when gone or a zombie."""
    try:
        stat = (_PROC / pid / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def _pids() -> list[str]:
    return [e.name for e in _PROC.iterdir() if e.name.isdigit()] if _PROC.is_dir() else []


def with_env(entry: str) -> list[int]:
    """Live pids whose environment holds ``entry`` exactly (``NAME=value``)."""
    want = entry.encode()
    out: list[int] = []
    for pid in _pids():
        try:
            env = (_PROC / pid / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if want in env and _stat(pid) is not None:
            out.append(int(pid))
    return sorted(out)


def descendants(root: int) -> set[int]:
    """Live pids below ``root`` in the process tree (``root`` itself not included)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(pid))
    out: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` still alive (not zombies)."""
    return sorted(p for p in pids if _stat(str(p)) is not None)
