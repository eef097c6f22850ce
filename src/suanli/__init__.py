"""suanli (算力): an open compute-power exchange.

Layers, imports pointing one way (see README "Architecture"):

    domain <- catalog, perf, latency <- market (clearing) <- engine
    sim, service, agent, cli, web sit on top as thin shells.
"""

__version__ = "0.1.0"
