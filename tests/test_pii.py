"""PII: the validated recognizers and the model-span decode contract, as pure functions."""
from __future__ import annotations

import numpy as np
import pytest

from control.pii import PiiSpan, find_patterns, merge_spans
from control.pii.decode import decode_spans
from control.pii.patterns import card_issuer, iban_valid, luhn_valid, ssn_valid


def found(text: str) -> list[tuple[str, str]]:
    return [(s.type, s.text) for s in find_patterns(text)]


@pytest.mark.parametrize("text,expected", [
    ("mail jane.doe@example.com today", [("EMAIL_ADDRESS", "jane.doe@example.com")]),
    ("mail jane..doe@example.com or a@b", []),
    ("call 212-555-0187 or +44 20 7946 0958", [("PHONE_NUMBER", "212-555-0187"), ("PHONE_NUMBER", "+44 20 7946 0958")]),
    ("call +1 123 456 7890 or 555-1234", []),                               # no US area code 123; too short
    ("Mein Telefon: 030 12345678", [("PHONE_NUMBER", "030 12345678")]),       # a national form of PHONE_REGIONS
    ("card 4111 1111 1111 1111.", [("CREDIT_CARD", "4111 1111 1111 1111")]),
    ("amex 378282246310005, mc 5500-0000-0000-0004", [("CREDIT_CARD", "378282246310005"),
                                                      ("CREDIT_CARD", "5500-0000-0000-0004")]),
    ("card 4111 1111 1111 1112", []),                                        # fails Luhn
    ("card 0000 0000 0000 0000", []),                                        # Luhn-valid, no issuer
    ("card 4111-1111 1111-1111", []),                                        # mixed separators
    ("IBAN DE89 3704 0044 0532 0130 00, thanks", [("IBAN_CODE", "DE89 3704 0044 0532 0130 00")]),
    ("IBAN GB82WEST12345698765432", [("IBAN_CODE", "GB82WEST12345698765432")]),
    ("IBAN DE89 3704 0044 0532 0130 01", []),                                # bad mod-97 checksum
    ("IBAN DE89 3704 0044 0532 0130", []),                                   # too short for DE
    ("SSN 078-05-1120 or 123 45 6789", [("US_SSN", "078-05-1120"), ("US_SSN", "123 45 6789")]),
    ("000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000 123-45 6789", []),
    ("order 123456789 shipped", []),                                         # bare 9 digits: not an SSN ...
    ("my ssn: 123456789", [("US_SSN", "123456789")]),                        # ... unless called one
    ("ping 192.168.1.1 now", [("IP_ADDRESS", "192.168.1.1")]),
    ("ping 999.1.1.1, version 1.2.3.4.5", []),
    ("host 2001:db8::8a2e:370:7334.", [("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
    ("std::vector<int> and Face::add, at 10:30:45", []),
    ("see https://example.com/a_(b) and (www.python.org).", [("URL", "https://example.com/a_(b)"),
                                                              ("URL", "www.python.org")]),
    ("ask google.com", [("DOMAIN_NAME", "google.com")]),
    ("edit file.py, call x.append(1), logger.info('x'), self.net = Net()", []),
])
def test_recognizers(text, expected):
    assert found(text) == expected


def test_spans_are_exact_and_validated():
    text = "Écrivez à zoe@example.org, 中文 4111111111111111"  # offsets are characters, not bytes
    spans = find_patterns(text)
    assert [(s.type, s.start, s.end) for s in spans] == [("EMAIL_ADDRESS", 10, 25), ("CREDIT_CARD", 30, 46)]
    assert all(text[s.start:s.end] == s.text and s.source == "pattern" and s.score == 1.0 for s in spans)


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert card_issuer("4111111111111111") == "visa" and card_issuer("4111111111111") == "visa"
    assert card_issuer("41111111111111") is None                      # Visa has no 14-digit numbers
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")
    assert not iban_valid("XX89370400440532013000")                   # no such country
    assert ssn_valid("078051120") and not any(ssn_valid(s) for s in ("000123456", "666123456", "900123456",
                                                                     "123004567", "123450000"))


ORDINARY = [
    "What is the derivative of x^3 sin(x)?",
    "My landlord won't return my deposit, what can I do?",
    "Explain the difference between TCP and UDP.",
    ".",
    "def reverse(head):\n    prev = None\n    while head:\n        head.next, prev, head = prev, head, head.next\n    return prev",
    "import numpy as np\nx = np.linspace(0, 1, 100)\nprint(x.mean(), os.path.join('a', 'b'))",
    "Python 3.11.4 was released on 2023-06-06 at 10:30:00; pi is 3.14159265358979.",
    "Sort these numbers: 1234567890 9876543210 5551234 42",
    "In 2019, 12345 people attended; the ratio was 3/4 and the total 1,000,000.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_no_pattern_pii_in_ordinary_prompts(text):
    assert found(text) == []


# ---- the decode contract, on hand-made logits ---------------------------------------------------
TAGS = ["O", "B-PERSON", "I-PERSON", "B-LOCATION", "I-LOCATION", "B-ORGANIZATION", "I-ORGANIZATION"]


def logits(*rows: dict[str, float]) -> np.ndarray:
    """One row per token from tag → probability (the rest of the mass on O)."""
    out = []
    for row in rows:
        p = np.full(len(TAGS), 1e-6)
        for tag, value in row.items():
            p[TAGS.index(tag)] = value
        p[0] = max(1.0 - sum(row.values()), 1e-6)
        out.append(np.log(p / p.sum()))
    return np.array(out)


def decoded(text, offsets, rows, thresholds=None):
    return [(s.type, s.text, round(s.score, 3)) for s in decode_spans(text, offsets, logits(*rows), TAGS, thresholds)]


O = {}


def test_begin_then_inside_make_one_span_scored_by_mean_mass():
    spans = decoded("John Smith lives", [(0, 0), (0, 4), (5, 10), (11, 16), (0, 0)],
                    [O, {"B-PERSON": 0.9}, {"I-PERSON": 0.7, "B-PERSON": 0.1}, O, O])
    assert spans == [("PERSON", "John Smith", 0.85)]


def test_mass_of_b_and_i_decides_type_and_threshold_is_per_type():
    rows = [{"B-PERSON": 0.3, "I-PERSON": 0.3, "B-LOCATION": 0.35}]
    assert decoded("Paris", [(0, 5)], rows) == [("PERSON", "Paris", 0.6)]     # 0.6 > 0.35: PERSON
    assert decoded("Paris", [(0, 5)], rows, {"PERSON": 0.7}) == []           # under PERSON's own threshold
    assert decoded("Paris", [(0, 5)], rows, {"LOCATION": 0.9}) != []        # other types' thresholds do not matter


def test_a_second_begin_starts_a_new_span_unless_inside_outweighs_it():
    offsets = [(0, 4), (5, 9)]
    assert [s[1] for s in decoded("John Mary", offsets, [{"B-PERSON": 0.9}, {"B-PERSON": 0.8, "I-PERSON": 0.1}])] \
        == ["John", "Mary"]
    assert [s[1] for s in decoded("John Mary", offsets, [{"B-PERSON": 0.9}, {"B-PERSON": 0.3, "I-PERSON": 0.4}])] \
        == ["John Mary"]
    assert [s[0] for s in decoded("John Paris", offsets, [{"B-PERSON": 0.9}, {"I-LOCATION": 0.9}])] \
        == ["PERSON", "LOCATION"]                                            # another type never continues


def test_word_pieces_follow_their_word():
    offsets = [(0, 4), (4, 7), (8, 13)]                                    # "John" "##son" "lives"
    assert decoded("Johnson lives", offsets, [{"B-PERSON": 0.9}, O, O]) == [("PERSON", "Johnson", 0.45)]
    assert decoded("Johnson lives", offsets, [O, {"B-PERSON": 0.9}, O]) == []   # a piece never starts a span


def test_glued_punctuation_continues_and_ends_are_trimmed():
    offsets = [(0, 1), (1, 2), (2, 7)]                                     # O ' Brien
    rows = [{"B-PERSON": 0.9}, {"B-PERSON": 0.6}, {"B-PERSON": 0.6}]
    assert [s[1] for s in decoded("O'Brien", offsets, rows)] == ["O'Brien"]
    assert [s[1] for s in decoded("(Bob), hi", [(0, 1), (1, 4), (4, 5), (5, 6)],
                                  [{"B-PERSON": 0.9}, {"I-PERSON": 0.9}, {"I-PERSON": 0.9}, {"I-PERSON": 0.9}])] == ["Bob"]
    assert [s[1] for s in decoded("I met Bob.", [(0, 1), (2, 5), (6, 9), (9, 10)],
                                  [O, O, {"B-PERSON": 0.9}, {"I-PERSON": 0.9}])] == ["Bob"]
    assert [s[1] for s in decoded("Acme Inc. hired", [(0, 4), (5, 8), (8, 9), (10, 15)],
                                  [{"B-ORGANIZATION": 0.9}, {"I-ORGANIZATION": 0.9}, {"I-ORGANIZATION": 0.9}, O])] \
        == ["Acme Inc."]                                                   # a listed abbreviation keeps its "."


def test_partial_word_spans_widen_to_the_whole_word():
    # a tokenizer split that is not a word piece (no seam check) still ends on word boundaries
    assert [s[1] for s in decoded("McDonald's", [(0, 2), (2, 8)], [{"B-ORGANIZATION": 0.9}, O])] == ["McDonald"]


def test_cjk_characters_are_words_of_their_own():
    text = "张伟来了"
    offsets = [(i, i + 1) for i in range(len(text))]
    assert [s[1] for s in decoded(text, offsets, [{"B-PERSON": 0.9}, {"I-PERSON": 0.9}, O, O])] == ["张伟"]


def test_model_spans_yield_to_patterns():
    pattern = [PiiSpan("EMAIL_ADDRESS", 10, 30, "x" * 20, "pattern", 1.0)]
    model = [PiiSpan("PERSON", 0, 4, "John", "model", 0.9), PiiSpan("PERSON", 12, 16, "jane", "model", 0.9),
             PiiSpan("PHONE_NUMBER", 40, 50, "x" * 10, "model", 0.99), PiiSpan("LOCATION", 60, 65, "Paris", "model", 0.8)]
    assert [(s.type, s.start) for s in merge_spans(pattern, model)] == [("PERSON", 0), ("EMAIL_ADDRESS", 10), ("LOCATION", 60)]


def test_phone_numbers_deep_in_long_prompts_keep_exact_offsets():
    text = "word " * 4000 + "call (212) 555-0187, +49 30 12345678 or order 1234567890 " + "more " * 1000
    spans = [s for s in find_patterns(text) if s.type == "PHONE_NUMBER"]
    assert [s.text for s in spans] == ["(212) 555-0187", "+49 30 12345678"]
    assert all(text[s.start:s.end] == s.text for s in spans)
