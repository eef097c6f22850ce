"""A tiny llama-architecture model in GGUF, written here from seeded random weights, so that
tests and demos run a *real* inference engine (llama.cpp) without downloading anything.

The model knows nothing: it emits random text. What matters is that it is a well-formed
llama model that llama.cpp loads and runs through the whole OpenAI-compatible path —
tokenizer, chat template, sampling, streaming, usage — at a few milliseconds per token
on a CPU.

Two choices make its output easy to test against:

- **It never stops by itself.** Every token embedding carries a constant first component,
  which dominates the final RMS norm; the output rows of the control tokens (``</s>``
  included) and of the 256 byte-fallback tokens weigh that component strongly negative,
  so their logits sit ~30 below the others and sampling never picks them. A completion
  therefore runs to ``max_tokens`` (or the context) and its ``completion_tokens`` is
  exactly what the client asked for — give clients a ``max_tokens``.
- **Its text is printable.** Only whole pieces (ASCII characters and common English
  words) are ever generated, never a byte token that could split a UTF-8 sequence.

The tokenizer is SentencePiece-style (llama.cpp's ``llama`` vocab): ``<unk>``, ``<s>``,
``</s>``, the byte-fallback tokens ``<0x00>``..``<0xFF>``, the printable ASCII characters
and ``▁``-prefixed words with every prefix (so the bigram merges always reach a word).

    python -m suanli.engines.tiny_gguf OUT.gguf [--seed N]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

__all__ = ["CHAT_TEMPLATE", "TinyVocab", "tiny_vocab", "write_tiny_llama"]

SPACE = "\u2581"  # SentencePiece's word-boundary mark

# The template llama-cpp-python's server renders chat messages with (Jinja2, from the
# GGUF metadata); Zephyr-like, and it stops at </s> like any llama chat model.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = """
the of and to a in is it you that he was for on are with as his they be at one have this
from or had by hot word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left
late run while press close night real life few north open seem together next white children
begin got walk example ease paper group always music those both mark often letter until mile
river car feet care second book carry took science eat room friend began idea fish mountain
stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard best
hour better true during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern pull
cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green quick develop ocean warm free minute strong special mind behind
clear tail produce fact street inch multiply nothing course stay wheel full force blue
object decide surface deep moon island foot system busy test record boat common gold possible
plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow
tire bring yes distant fill east paint language among
"""


@dataclass(frozen=True)
class TinyVocab:
    """The tokenizer's arrays, index = token id."""

    tokens: list[str]
    scores: list[float]
    types: list[int]

    @property
    def generable(self) -> np.ndarray:
        """Which tokens the model may emit: whole pieces, never control or byte tokens."""
        return np.array([t == TokenType.NORMAL for t in self.types])


def tiny_vocab(words: Sequence[str] | None = None) -> TinyVocab:
    """The SentencePiece-style vocab: specials, byte fallback, characters, word pieces.

    A word's pieces are every prefix of ``▁word`` of two characters or more; llama.cpp's
    SPM tokenizer merges the best-scoring adjacent pair first, and since every multi-
    character piece starts at a ``▁``, each word merges left to right into one token."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = [SPACE, *(chr(c) for c in range(33, 127))]
    seen = set(pieces)
    for word in words if words is not None else _WORDS.split():
        marked = SPACE + word
        for end in range(2, len(marked) + 1):
            if marked[:end] not in seen:
                seen.add(marked[:end])
                pieces.append(marked[:end])
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))]
    return TinyVocab(tokens=tokens, scores=scores, types=[int(t) for t in types])


def _weights(
    rng: np.random.Generator, vocab: TinyVocab, n_embd: int, n_layer: int, n_ff: int
) -> dict[str, np.ndarray]:
    """The tensors by GGUF name, numpy shapes (rows, cols) = ggml's (ne1, ne0)."""

    def normal(*shape: int, std: float = 0.02) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    embd = normal(len(vocab.tokens), n_embd, std=0.1)
    embd[:, 0] = 1.0  # the constant component the final norm keeps dominant
    out = normal(len(vocab.tokens), n_embd, std=0.3)
    out[:, 0] = np.where(vocab.generable, 0.0, -5.0)  # ~-30 logits: never sampled
    out[~vocab.generable, 1:] = 0.0
    ones = np.ones(n_embd, dtype=np.float32)
    tensors = {"token_embd.weight": embd, "output_norm.weight": ones, "output.weight": out}
    for i in range(n_layer):
        blk = f"blk.{i}."
        tensors |= {
            blk + "attn_norm.weight": ones.copy(),
            blk + "attn_q.weight": normal(n_embd, n_embd),
            blk + "attn_k.weight": normal(n_embd, n_embd),
            blk + "attn_v.weight": normal(n_embd, n_embd),
            blk + "attn_output.weight": normal(n_embd, n_embd),
            blk + "ffn_norm.weight": ones.copy(),
            blk + "ffn_gate.weight": normal(n_ff, n_embd),
            blk + "ffn_up.weight": normal(n_ff, n_embd),
            blk + "ffn_down.weight": normal(n_embd, n_ff),
        }
    return tensors


def write_tiny_llama(
    path: str | Path,
    *,
    seed: int = 0,
    vocab: Sequence[str] | None = None,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 128,
    n_ctx: int = 512,
) -> Path:
    """Write the tiny model to ``path`` (about 1 MB, F32) and return the path.

    ``vocab``: the words the tokenizer knows as whole pieces (default: ~500 common
    English words). Same arguments, same bytes: the weights come from ``seed`` alone."""
    if n_embd % n_head:
        raise ValueError(f"n_embd {n_embd} is not a multiple of n_head {n_head}")
    path = Path(path)
    tok = tiny_vocab(vocab)
    w = GGUFWriter(path, "llama")
    w.add_name("suanli-tiny-llama")
    w.add_file_type(LlamaFileType.ALL_F32)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tok.tokens))
    w.add_tokenizer_model("llama")
    w.add_token_list(tok.tokens)
    w.add_token_scores(tok.scores)
    w.add_token_types(tok.types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in _weights(np.random.default_rng(seed), tok, n_embd, n_layer, n_ff).items():
        w.add_tensor(name, tensor)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m suanli.engines.tiny_gguf OUT.gguf``: write the model, print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the .gguf file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-ctx", type=int, default=512)
    args = parser.parse_args(argv)
    print(write_tiny_llama(args.out, seed=args.seed, n_ctx=args.n_ctx))


if __name__ == "__main__":
    main()
