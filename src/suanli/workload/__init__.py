"""Workload models fitted to public traces; parameters ship with the package."""
