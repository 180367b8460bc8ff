"""Baselines: each account's habits (networks, clients, hours, targets) and what departs from
them (`habits`, `agents`: pure), kept in ETag-guarded rows by `profiler`. Imports notify,
store, core."""
