"""Input limits shared by the SavedModel's checks and the ONNX runner's (a
module without imports, so the runner stays free of TensorFlow)."""

MAX_SAMPLES = 1_000_000  # per call; a larger count is refused, not tried
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 1e4  # outside: refused (argmax decoding has its own flag)
ACROSTIC_LINES = 4  # an acrostic is a quatrain: one head character per line
BANNED_LOGIT = -1e9  # added to an id's logit where it must not be drawn
PAD_ID, START_ID, UNKNOWN_ID = 0, 1, 3  # reserved ids of text vocabularies (tfseqgan.text)
