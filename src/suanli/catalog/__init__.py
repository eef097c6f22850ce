"""The built-in catalogue: data files with a source column, loaders and pure queries.

Public surface (implemented in ``_load.py``, ``queries.py`` and ``fleet.py``):

- ``Catalog`` — accelerators, models, hubs, clusters, cities, power prices (by province).
- ``load_catalog()`` — read the shipped CSV files (I/O happens only here; cached).
- ``accelerator(cat, name)``, ``model(cat, name)``, ``hub(cat, name)``, ``city(cat, name)``,
  ``power(cat, province)`` — case-insensitive lookups raising ``UnknownName`` with the
  nearest valid names.
- ``load_fleet(name="china-2025", seed=...)`` — the calibrated synthetic national fleet.
"""
