"""Notify: the alert message and its Teams and Slack renderings (`messages`), the daily digest,
incident rows and notification decisions (`incidents`), and exactly-once delivery to the
queue and webhooks (`delivery`). Imports store, core."""
