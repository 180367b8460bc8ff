"""The store: the only place that knows row shapes and keys (`entities`, `keys`, `layout`,
the quarantine document) and the one that talks to Azure Storage (`tables`). Imports `core`."""
