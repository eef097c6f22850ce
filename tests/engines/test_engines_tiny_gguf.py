"""The tiny model is a well-formed llama GGUF, small and quick to write, and llama.cpp
runs it: tokenizes with its vocab, generates exactly max_tokens, renders its chat template."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader

from suanli.engines.tiny_gguf import CHAT_TEMPLATE, tiny_vocab, write_tiny_llama


def _field(reader: GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def test_small_quick_and_well_formed(tmp_path: Path) -> None:
    start = time.perf_counter()
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    assert time.perf_counter() - start < 1.0
    assert path.stat().st_size < 2 * 1024 * 1024
    reader = GGUFReader(path)
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == 2
    assert _field(reader, "llama.context_length") == 512
    assert _field(reader, "tokenizer.ggml.model") == "llama"
    assert _field(reader, "tokenizer.chat_template") == CHAT_TEMPLATE
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3 + 0x0A] == "<0x0A>"
    assert len(tokens) == len(tiny_vocab().tokens) == _field(reader, "llama.vocab_size")
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_tiny_llama(tmp_path / "a.gguf", seed=3, vocab=["hello", "world"])
    b = write_tiny_llama(tmp_path / "b.gguf", seed=3, vocab=["hello", "world"])
    c = write_tiny_llama(tmp_path / "c.gguf", seed=4, vocab=["hello", "world"])
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_vocab_reaches_whole_words() -> None:
    vocab = tiny_vocab(["hello"])
    assert {"\u2581h", "\u2581he", "\u2581hel", "\u2581hell", "\u2581hello"} <= set(vocab.tokens)
    assert len(set(vocab.tokens)) == len(vocab.tokens)
    assert not vocab.generable[:259].any() and vocab.generable[259:].all()


def test_command_line_writes_the_model(tmp_path: Path) -> None:
    out = tmp_path / "cli.gguf"
    argv = [sys.executable, "-m", "suanli.engines.tiny_gguf", str(out), "--seed", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(out)
    assert out.read_bytes() == write_tiny_llama(tmp_path / "same.gguf", seed=1).read_bytes()


@pytest.mark.slow
@pytest.mark.requires("llama")
def test_llama_cpp_loads_and_generates(tmp_path: Path) -> None:
    """In a child process: llama.cpp's native library stays out of the test process."""
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    script = f"""
import json, llama_cpp
llm = llama_cpp.Llama({str(path)!r}, n_ctx=256, n_threads=1, seed=0, verbose=False)
out = llm.create_completion("the world is", max_tokens=12, temperature=0.8)
chat = llm.create_chat_completion(
    [{{"role": "user", "content": "hello there"}}], max_tokens=6, temperature=0.0)
print(json.dumps({{
    "tokens": llm.tokenize(b"the world", add_bos=False),
    "piece": llm.detokenize(llm.tokenize(b"the world", add_bos=False)).decode(),
    "text": out["choices"][0]["text"], "usage": out["usage"],
    "chat": chat["choices"][0]["message"]["content"], "chat_usage": chat["usage"],
}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(got["tokens"]) == 2  # "▁the", "▁world": whole-word pieces
    assert got["piece"].strip() == "the world"
    assert got["usage"]["completion_tokens"] == 12  # it never stops before max_tokens
    assert got["usage"]["prompt_tokens"] == 4  # <s> ▁the ▁world ▁is
    assert got["text"].strip()
    assert got["chat_usage"]["completion_tokens"] == 6
    assert got["chat"].strip()
