"""What capture, API and worker share: settings, keys, contracts, the frame buffer, the queue."""
