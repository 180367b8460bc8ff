"""Active response: end the Bastion sessions a compromise opened (opt-in), once per incident,
after its alert: the matching (pure), the session API, and the runner. Imports hosts (its ARM
client), notify, store, core."""
