"""The engine: exchange state, work lifecycle and ledger rules, on an injected clock.

The simulator and the live service drive the same engine: both build snapshots with
:meth:`ExchangeState.snapshot`, clear them with a market policy, and apply the decision
with :meth:`ExchangeState.apply`; time moves only when the caller says so.
"""
