"""bastion-audit: Azure Bastion audit logs to stored records, incidents and answers.

One package per stage of the data's walk (docs/architecture.md); the root holds only the
wiring: the worker's services, the trigger bodies and the command line."""
