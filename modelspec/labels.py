"""The label lists of every routing signal: the one place they are written down.

They travel into the model repository's metadata (config.pbtxt parameters), and the
gateway reads them from there, so a retrained model with other labels needs no code change.
"""

# The 14 MMLU-Pro categories (TIGER-Lab/MMLU-Pro `category` values).
DOMAINS: tuple[str, ...] = (
    "biology", "business", "chemistry", "computer science", "economics", "engineering",
    "health", "history", "law", "math", "other", "philosophy", "physics", "psychology",
)

TASKS: tuple[str, ...] = (
    "math", "coding", "creative_writing", "brainstorming", "summarization",
    "information_extraction", "classification", "open_qa", "closed_qa", "chitchat",
)

# Presidio's entity types (train: generated_large.json; eval: synth_dataset_v2.json).
PII_TYPES: tuple[str, ...] = (
    "PERSON", "ADDRESS", "LOCATION", "ORGANIZATION", "CREDIT_CARD", "PHONE_NUMBER",
    "DATE_TIME", "EMAIL_ADDRESS", "US_SSN", "IBAN_CODE", "DOMAIN_NAME", "IP_ADDRESS",
    "US_DRIVER_LICENSE", "TITLE", "AGE", "NRP", "ZIP_CODE",
)

# Names Presidio's eval set uses for the same entities as our training data.
PII_ALIASES: dict[str, str] = {"STREET_ADDRESS": "ADDRESS", "GPE": "LOCATION"}


def bio_tags(types: tuple[str, ...] = PII_TYPES) -> tuple[str, ...]:
    """BIO tag list: index 0 is O, then B-/I- per entity type (pii_logits' last axis)."""
    tags = ["O"]
    for t in types:
        tags += [f"B-{t}", f"I-{t}"]
    return tuple(tags)


PII_TAGS: tuple[str, ...] = bio_tags()
