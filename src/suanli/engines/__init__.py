"""Inference engines behind the gateway's replicas, for tests, demos and benchmarks.

- :mod:`suanli.engines.llama` — the command line of a real OpenAI-compatible server
  (llama.cpp through llama-cpp-python, the ``serve`` extra) that a replica runs.
- :mod:`suanli.engines.tiny_gguf` — a tiny random-weight llama model written locally, so
  that real engine runs without downloading a model.
- :mod:`suanli.engines.standin` — a protocol-level *stand-in* upstream: it speaks the
  OpenAI API with made-up text and exact, configurable usage and latency, for load and
  fault tests and benchmarks. It is not an inference engine.
"""
