"""Hosts: each Bastion host's hourly activity and when its silence means the logs stopped
(`activity`), whether its diagnostic setting still sends us its audit log (`diagnostics`,
`arm`), and the timer's runner (`health`). Imports notify, store, core."""
