"""The API: accepts events, pins their frames, queues jobs, reports recordings."""
