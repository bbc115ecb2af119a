"""The served model's interface: its name, its tensors in order, their shapes, its window.

The export writes these into the ONNX graph and config.pbtxt; the gateway asks Triton for
them by name; the Triton model.py reads them back from config.pbtxt (its stub cannot import
this package).
"""
from modelspec.labels import DOMAINS, PII_TAGS, TASKS

MODEL_NAME = "router"
EMBEDDING_DIM = 384
# all-MiniLM-L6-v2 was trained on 256 tokens; longer prompts are read in chunks of this size.
MAX_SEQ_LEN = 256

INPUT_IDS, ATTENTION_MASK = "input_ids", "attention_mask"
INPUT_NAMES = (INPUT_IDS, ATTENTION_MASK)
# The v1 outputs keep their names, order and shapes; v2 appends harmful_prob.
OUTPUT_NAMES = ("embedding", "domain_probs", "task_probs", "jailbreak_prob", "strong_prob", "pii_logits", "harmful_prob")
# Per token, not per sequence: its second axis is the row's length.
PER_TOKEN_OUTPUT = "pii_logits"


def output_dims() -> dict[str, list[int]]:
    """Per-sequence output shapes, in OUTPUT_NAMES order (the batch axis is implicit; -1: the row's length)."""
    dims = {"embedding": [EMBEDDING_DIM], "domain_probs": [len(DOMAINS)], "task_probs": [len(TASKS)],
            "jailbreak_prob": [1], "strong_prob": [1], PER_TOKEN_OUTPUT: [-1, len(PII_TAGS)], "harmful_prob": [1]}
    return {name: dims[name] for name in OUTPUT_NAMES}
