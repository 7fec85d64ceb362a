"""The capture: one source into one camera's capped frame stream."""
