"""Input limits shared by the SavedModel's checks, the ONNX runner's and the
export's checks of model files (a module without imports, so the runner stays
free of TensorFlow). docs/reliability.md lists them with the threat model."""

# Requests (every SavedModel signature, OnnxSampler and its CLI).
MAX_SAMPLES = 1_000_000  # rows per call (samples, prefixes, id sequences, heads); 0 rows is refused too
MAX_REQUEST_TOKENS = 1 << 25  # rows x sequence length per call (the (rows, time) ids alone: 128 MiB of int32)
MAX_THREADS = 64  # --threads / OnnxSampler(threads=); 0 means every core
MAX_CHUNK_SIZE = 65_536  # OnnxSampler(chunk_size=)
MAX_SEED = 2**63 - 1  # seeds are int64 on the SavedModel side
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 1e4  # outside: refused (argmax decoding has its own flag)
SCORE_BUDGET_BYTES = 256 << 20  # scoring runs in row chunks whose logits fit this

# Model descriptions (model.json, the ONNX metadata): sizes checked before anything is allocated.
MAX_VOCABULARY_SIZE = 1_000_000
MAX_SEQUENCE_LENGTH = 10_000
MAX_LAYER_SIZE = 65_536  # embedding_dim, hidden_dim
MAX_PARAMETERS = 1 << 28  # 1 GiB of float32 weights
MAX_TIME_BY_VOCABULARY = 1 << 26  # sequence_length x vocabulary_size: a (time, vocab) float32 bias is 256 MiB
MAX_SEED_VALUE = 2**31 - 1  # the generator's initializer seed

# Files of a model folder, capped before they are read.
MAX_DESCRIPTION_BYTES = 1 << 20  # model.json, the ONNX metadata entry
MAX_MANIFEST_BYTES = 16 << 20
MAX_VOCABULARY_BYTES = 64 << 20
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit

ACROSTIC_LINES = 4  # an acrostic is a quatrain: one head character per line
BANNED_LOGIT = -1e9  # added to an id's logit where it must not be drawn
PAD_ID, START_ID, UNKNOWN_ID = 0, 1, 3  # reserved ids of text vocabularies (tfseqgan.text)
