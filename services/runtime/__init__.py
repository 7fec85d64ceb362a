"""Process plumbing: health probes, the embedded redis-server, starting and stopping services."""
