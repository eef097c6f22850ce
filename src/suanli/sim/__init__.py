"""The national simulator and planner: the exchange engine on a simulated clock.

- :func:`load_scenario` — a built-in scenario (``china-2025``, ``deepseek-shift``,
  ``vouchers``, ``outage``, ``qingyang-h20``) or a TOML/YAML file.
- :func:`simulate` — run it under several clearing policies on one shared workload; a
  :class:`SimResult` with one summary and one time series per policy.
- :func:`write_outputs` — summary.json, timeseries.csv, rounds.csv and report.html.

Modules: ``events`` (the event loop), ``scenario`` (files), ``world`` (fleet and per-pool
constants), ``demand`` (the workload), ``arrivals`` (the requests each round measures),
``serving`` (planned demand from the exchange's estimator, and what replicas serve of the
true demand), ``traces`` (trace parsers), ``sellers`` (reserve policies), ``runner`` (one
policy over a workload: the handlers), ``metrics`` and
``summary`` (what is measured), ``table``, ``svg`` and ``report_html`` (what is shown).
"""

from suanli.sim.outputs import write_outputs
from suanli.sim.scenario import Scenario, builtin_scenarios, load_scenario
from suanli.sim.simulate import SIM_POLICIES, PolicyResult, SimResult, simulate

__all__ = [
    "SIM_POLICIES",
    "PolicyResult",
    "Scenario",
    "SimResult",
    "builtin_scenarios",
    "load_scenario",
    "simulate",
    "write_outputs",
]
