"""A real OpenAI-compatible inference engine for replicas: llama.cpp, through
llama-cpp-python's server (the ``serve`` extra: ``pip install 'suanli[serve]'``, which
compiles llama.cpp — minutes, once; pip caches the wheel).

:func:`llama_server_command` is the command line a site agent runs for a replica (with
``$PORT`` set to a free port); the agent probes :data:`HEALTH_PATH` on it. The server
(llama-cpp-python 0.3.36) has no ``/health``: ``GET /v1/models`` answers 200 once the
model is loaded — uvicorn only starts listening after that — so it serves as the probe.

Served paths: ``/v1/chat/completions``, ``/v1/completions`` (streaming with
``stream_options.include_usage`` or not), ``/v1/models``, ``/v1/embeddings``. It runs one
request at a time; ``--interrupt_requests False`` makes a second request wait instead of
cutting the stream of the first, which is what a gateway in front of it expects.

With the tiny model of :mod:`suanli.engines.tiny_gguf` it runs on any CPU.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = [
    "HEALTH_PATH",
    "llama_available",
    "llama_problem",
    "llama_server_command",
]

HEALTH_PATH = "/v1/models"
_SHELL_VAR = re.compile(r"\$(\w+|\{\w+\})")


def _port_arg(port: int | str) -> str:
    """``$PORT`` (or any lone shell variable) stays unquoted for the shell to expand."""
    text = str(port)
    return text if _SHELL_VAR.fullmatch(text) else shlex.quote(text)


def llama_server_command(
    model_path: str | Path,
    *,
    port: int | str = "$PORT",
    host: str = "127.0.0.1",
    n_ctx: int = 512,
    alias: str | None = None,
    n_threads: int = 1,
    python: str | None = None,
) -> str:
    """The shell command line (``/bin/sh -c``) that serves ``model_path`` on ``host:port``.

    ``alias``: the model name in ``/v1/models`` and in answers (default: the file's stem).
    ``n_threads`` 1: a tiny model gains nothing from more threads, and replicas share the
    machine. ``python``: the interpreter with llama-cpp-python (default: this one)."""
    argv = [
        python or sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        alias or Path(model_path).stem,
        "--host",
        host,
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]
    return shlex.join(argv) + " --port " + _port_arg(port)


@functools.cache
def llama_problem(python: str | None = None) -> str | None:
    """Why llama-cpp-python's server cannot run under ``python`` (default: this
    interpreter), or ``None`` when it can. Imported in a child process: loading the
    native library must not be able to take the caller down, and importing the server
    pulls in modules the caller may not want."""
    argv = [python or sys.executable, "-c", "import llama_cpp, llama_cpp.server.app"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {argv[0]}: {e}"
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
        return f"llama-cpp-python[server] does not import in {argv[0]}: {tail[0]}"
    return None


def llama_available(python: str | None = None) -> bool:
    """Whether ``import llama_cpp`` and ``import llama_cpp.server`` work under ``python``."""
    return llama_problem(python) is None
