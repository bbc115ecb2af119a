"""MMLU subject -> MMLU-Pro category (modelspec.labels.DOMAINS).

Source: MMLU-Pro (Wang et al. 2024, arXiv:2406.01574; dataset TIGER-Lab/MMLU-Pro). Every
MMLU-Pro question taken from MMLU keeps its origin in `src` = "ori_mmlu-<subject>" next to its
`category`; this table is that correspondence, one row per MMLU subject. Subjects MMLU-Pro
folds into "other" (geography, government and politics, sociology, public relations, security
studies, foreign policy, human sexuality, global facts, miscellaneous) stay there.
Written once here; never tuned on eval data.
"""
from __future__ import annotations

from modelspec import labels

MMLU_TO_MMLU_PRO: dict[str, str] = {
    # math
    "abstract_algebra": "math", "college_mathematics": "math", "elementary_mathematics": "math",
    "high_school_mathematics": "math", "high_school_statistics": "math",
    # physics
    "astronomy": "physics", "college_physics": "physics", "conceptual_physics": "physics",
    "high_school_physics": "physics",
    # chemistry / biology
    "college_chemistry": "chemistry", "high_school_chemistry": "chemistry",
    "college_biology": "biology", "high_school_biology": "biology",
    # computer science / engineering
    "college_computer_science": "computer science", "high_school_computer_science": "computer science",
    "computer_security": "computer science", "machine_learning": "computer science",
    "electrical_engineering": "engineering",
    # health
    "anatomy": "health", "clinical_knowledge": "health", "college_medicine": "health",
    "human_aging": "health", "medical_genetics": "health", "nutrition": "health",
    "professional_medicine": "health", "virology": "health",
    # economics / business
    "econometrics": "economics", "high_school_macroeconomics": "economics",
    "high_school_microeconomics": "economics",
    "business_ethics": "business", "management": "business", "marketing": "business",
    "professional_accounting": "business",
    # psychology
    "high_school_psychology": "psychology", "professional_psychology": "psychology",
    # law
    "international_law": "law", "jurisprudence": "law", "professional_law": "law",
    # philosophy
    "formal_logic": "philosophy", "logical_fallacies": "philosophy", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "philosophy": "philosophy", "world_religions": "philosophy",
    # history
    "high_school_european_history": "history", "high_school_us_history": "history",
    "high_school_world_history": "history", "prehistory": "history",
    # other
    "global_facts": "other", "miscellaneous": "other", "high_school_geography": "other",
    "high_school_government_and_politics": "other", "human_sexuality": "other",
    "public_relations": "other", "security_studies": "other", "sociology": "other",
    "us_foreign_policy": "other",
}

assert set(MMLU_TO_MMLU_PRO.values()) == set(labels.DOMAINS), "every domain needs a source subject"


def domain_of_subject(subject: str) -> str:
    """MMLU-Pro category of an MMLU subject; KeyError on an unknown subject (no silent 'other')."""
    return MMLU_TO_MMLU_PRO[subject]
