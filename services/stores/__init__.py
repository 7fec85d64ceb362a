"""The Redis stores: a camera's frame buffer and pins, recording state, cameras, the job queue."""
