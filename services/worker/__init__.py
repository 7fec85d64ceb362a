"""The worker: reads a pinned window of frames and writes it as a recording."""
