"""The shared kernel: settings, contracts, key names, the frame codec, backoff and outages."""
