"""Completion webhooks: signed POSTs of every final recording, retried, dead-lettered."""
