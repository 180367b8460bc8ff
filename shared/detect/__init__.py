"""Detect: events to minute buckets to hot minutes to incidents (`windows`, the rules' logic),
what an invocation must re-read (`planning`), and the runner that reads and writes (`runner`).
Imports baselines, hosts, notify, store, core."""
