"""sco-recorder: stores the frames just before each self-checkout event, losslessly."""
