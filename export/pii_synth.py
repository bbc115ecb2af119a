"""More PII training sentences: presidio's templates (train/presidio_pii/templates.txt) filled
with Faker values and presidio's own value lists, spans labelled as presidio-evaluator's
PresidioSentenceFaker labels them (ENTITY_TYPE_MAPPING in presidio-research
presidio_evaluator/data_generator/presidio_sentence_faker.py), then folded into our PII_TYPES
(STREET_ADDRESS -> ADDRESS, GPE -> LOCATION).

generated_large.json alone has no AGE, NRP or ZIP_CODE spans; the templates have those slots.
"""
from __future__ import annotations

import random
import re
from datetime import datetime

from modelspec import labels
from export.data import Example, Files

# Faker provider (template slot) -> presidio entity type.
SLOT_TYPES = {
    "person": "PERSON", "name": "PERSON", "name_female": "PERSON", "name_male": "PERSON",
    "first_name": "PERSON", "first_name_male": "PERSON", "first_name_female": "PERSON",
    "first_name_nonbinary": "PERSON", "last_name": "PERSON", "last_name_male": "PERSON",
    "last_name_female": "PERSON", "organization": "ORGANIZATION", "ip_address": "IP_ADDRESS",
    "us_driver_license": "US_DRIVER_LICENSE", "address": "STREET_ADDRESS", "street_name": "STREET_ADDRESS",
    "building_number": "STREET_ADDRESS", "secondary_address": "STREET_ADDRESS", "postcode": "STREET_ADDRESS",
    "country": "GPE", "state": "GPE", "city": "GPE", "state_abbr": "GPE", "credit_card_number": "CREDIT_CARD",
    "iban": "IBAN_CODE", "phone_number": "PHONE_NUMBER", "url": "DOMAIN_NAME", "ssn": "US_SSN",
    "email": "EMAIL_ADDRESS", "date_time": "DATE_TIME", "date_of_birth": "DATE_TIME",
    "day_of_week": "DATE_TIME", "year": "DATE_TIME", "prefix": "TITLE", "prefix_male": "TITLE",
    "prefix_female": "TITLE", "job": "TITLE", "nationality": "NRP", "nation_woman": "NRP",
    "nation_man": "NRP", "nation_plural": "NRP", "zipcode": "ZIP_CODE", "age": "AGE",
}
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_PT", "pl_PL")
LOWER_CASE_RATIO = 0.05
BIRTHS = (datetime(1930, 1, 1), datetime(2010, 12, 31))
DATES = (datetime(1970, 1, 1), datetime(2024, 12, 31))   # presidio's generator lower-cases a small share of sentences


class ValueSource:
    """One value per slot name, from Faker (random locale) or presidio's value lists."""

    def __init__(self, fs, rng: random.Random, seed: int):
        from faker import Faker

        self.rng = rng
        self.fakers = {loc: Faker(loc) for loc in LOCALES}
        for i, f in enumerate(self.fakers.values()):
            f.seed_instance(seed * 100 + i)
        self.orgs = [r["organization"] for r in fs.csv("train/presidio_pii/companies_and_organizations.csv")]
        self.nations = fs.csv("train/presidio_pii/nationalities.csv")
        self.licenses = [r["us_driver_license"] for r in fs.csv("train/presidio_pii/us_driver_licenses.csv")]
        self.people = fs.csv("train/presidio_pii/FakeNameGenerator.com_3000.csv")

    def faker(self, english: bool = False):
        return self.fakers["en_US" if english or self.rng.random() < 0.5 else self.rng.choice(LOCALES)]

    def value(self, slot: str) -> str:
        rng, f = self.rng, self.faker()
        nation = self.rng.choice(self.nations)
        special = {
            "organization": lambda: rng.choice(self.orgs),
            "us_driver_license": lambda: rng.choice(self.licenses),
            "nationality": lambda: nation["nationality"],
            "nation_woman": lambda: nation["woman"], "nation_man": lambda: nation["man"],
            "nation_plural": lambda: nation["plural"],
            "age": lambda: str(rng.randint(1, 99)),
            "person": lambda: self._person(), "name": lambda: self._person(),
            "ip_address": lambda: self.faker(True).ipv4() if rng.random() < 0.8 else self.faker(True).ipv6(),
            "url": lambda: f.domain_name() if rng.random() < 0.5 else f.url(),
            "ssn": lambda: self.faker(True).ssn(), "state_abbr": lambda: self.faker(True).state_abbr(),
            "zipcode": lambda: self.faker(True).zipcode() if rng.random() < 0.5 else f.postcode(),
            # fixed date ranges: Faker's defaults move with today's date (non-reproducible data)
            "date_of_birth": lambda: f.date_between(BIRTHS[0], BIRTHS[1]).strftime(rng.choice(["%m/%d/%Y", "%Y-%m-%d", "%d %B %Y"])),
            "date_time": lambda: f.date_time_between(DATES[0], DATES[1]).strftime(
                "%Y-%m-%d %H:%M:%S" if rng.random() < 0.5 else "%Y-%m-%d"),
            "year": lambda: str(rng.randint(1940, 2024)), "prefix": lambda: f.prefix(),
        }
        if slot in special:
            return special[slot]()
        for fk in (f, self.fakers["en_US"]):
            if hasattr(fk, slot):
                return str(getattr(fk, slot)())
        raise KeyError(slot)

    def _person(self) -> str:
        if self.rng.random() < 0.5:
            r = self.rng.choice(self.people)
            return f"{r['GivenName']} {r['Surname']}"
        return self.faker().name()


SLOT = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def fill(template: str, values: ValueSource) -> tuple[str, list[tuple[int, int, str]]]:
    """Template -> (text, spans) with spans in our PII_TYPES."""
    text, spans, pos = "", [], 0
    for m in SLOT.finditer(template):
        text += template[pos:m.start()]
        slot = m.group(1)
        val = values.value(slot).strip()
        kind = SLOT_TYPES.get(slot)
        kind = labels.PII_ALIASES.get(kind, kind) if kind else None
        if kind in labels.PII_TYPES and val:
            spans.append((len(text), len(text) + len(val), kind))
        text += val
        pos = m.end()
    text += template[pos:]
    return text, spans


def synthesize(fs, n: int, seed: int = 0):
    """n sentences from presidio's templates (round robin over templates, so all are used)."""
    rng = random.Random(seed)
    templates = [t.strip() for t in fs.path("train/presidio_pii/templates.txt").read_text(encoding="utf-8").split("\n")
                 if t.strip()]
    values = ValueSource(fs, rng, seed)
    out = []
    for i in range(n):
        template = templates[i % len(templates)]
        text, spans = fill(template.replace("\\n", "\n"), values)
        if rng.random() < LOWER_CASE_RATIO:
            text = text.lower()
        # group by template: sentences of one template fall in the same split
        out.append(Example(text, "presidio_templates_faker", f"template {i % len(templates)}", pii=spans))
    return out


# WNUT-17 (user-generated text) -> our PII types; products and creative works are not personal data.
WNUT_TYPES = {"person": "PERSON", "location": "LOCATION", "corporation": "ORGANIZATION", "group": "ORGANIZATION"}


def load_wnut(fs: Files) -> list[Example]:
    """WNUT-17 sentences with their entity spans; most carry none, which teaches the head that
    ordinary chatty text holds no PII."""
    out = []
    for r in fs.jsonl("train/wnut17/wnut17_spans.jsonl"):
        spans = [(s["start"], s["end"], WNUT_TYPES[s["label"]]) for s in r["spans"] if s["label"] in WNUT_TYPES]
        out.append(Example(r["text"], "wnut17", r["text"], pii=spans))
    return out
