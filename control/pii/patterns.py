"""Validated recognizers for structured PII: exact character spans, nothing unvalidated.

Every regex here is compiled with RE2 (linear time in the text, whatever the input) and
only proposes candidates; a candidate is reported only when its validator accepts it
(checksums, number-plan rules, `ipaddress`, `phonenumbers`). Types and what "valid" means:

  EMAIL_ADDRESS  local@domain.tld, dot rules on both parts
  PHONE_NUMBER   phonenumbers' matcher at Leniency.VALID: numbers in +international form in
                 any country, national forms of PHONE_REGIONS written as a phone number is (with
                 spaces, dashes, dots or brackets: a bare run of digits is an id or a timestamp)
  CREDIT_CARD    13-19 digits (single spaces or dashes between groups), Luhn, a known
                 issuer prefix with a length that issuer uses
  IBAN_CODE      country code, the country's IBAN length, ISO 7064 mod-97 == 1
  US_SSN         AAA-GG-SSSS or AAA GG SSSS (no 000/666/9xx area, 00 group, 0000 serial);
                 nine bare digits only right after "SSN" / "social security (number)"
  IP_ADDRESS     IPv4 and IPv6 that `ipaddress` accepts (IPv6: with a digit, so C++ `Face::add`
                 is not one); not part of a longer dotted number (versions)
  URL            http(s)/ftp scheme or www., with a plausible host
  DOMAIN_NAME    bare name.tld for a short list of TLDs that are not file extensions or
                 common attribute names ("file.py", "x.append", "logger.info" are not domains)
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import phonenumbers
import re2

from control.pii.spans import PiiSpan, non_overlapping

# National number forms are read as these countries' (an "+" number is read in any country).
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN")
PATTERN_TYPES = frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
                           "IP_ADDRESS", "URL", "DOMAIN_NAME"})

# Lower-case only, and none that is also a common file extension or attribute name (py, rs, md,
# sh, pl, js, at, id, in, no, be, it, app, info, me ...).
DOMAIN_TLDS = ("com", "net", "org", "edu", "gov", "mil", "int", "io", "ai", "co", "uk", "de", "fr", "es", "nl",
               "ch", "se", "dk", "fi", "ie", "pt", "ru", "cn", "jp", "kr", "au", "nz", "ca", "br", "mx", "us",
               "eu", "cz", "gr", "hu", "ro", "tr", "ua", "il", "za", "sg", "hk", "tw", "vn", "dev", "biz")
CODE_RECEIVERS = frozenset({"self", "this", "cls", "super", "obj", "os", "np", "pd", "torch", "tf", "math", "sys"})

# IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

# Where a phone number could be: phonenumbers' matcher (pure Python, one pass per region) reads
# only these stretches and a little context around them, not the whole prompt.
_PHONE_CANDIDATE = re2.compile(r"\+?\(?\d[\d ().\-/]{5,}\d")
PHONE_CONTEXT = 16
_EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re2.compile(r"\b\d[\d -]{11,22}\d\b")
_IBAN = re2.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9 ]{11,40}")
_SSN = re2.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")
_SSN_BARE = re2.compile(r"(?i)\b(?:ssn|social security number|social security no|social security)\W{0,5}(\d{9})\b")
_IPV4 = re2.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
_IPV6 = re2.compile(r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]+")
_URL = re2.compile(r"(?i)(?:https?://|ftp://|www\.)[^\s<>\"'`]+")
_DOMAIN = re2.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\.(?:" + "|".join(DOMAIN_TLDS) + r")\b")


def find_patterns(text: str) -> list[PiiSpan]:
    """Every validated structured-PII span in `text`, leftmost-longest where they overlap."""
    found = [span for recognizer in RECOGNIZERS for span in recognizer(text)]
    return non_overlapping(found)


def _span(kind: str, text: str, start: int, end: int) -> PiiSpan:
    return PiiSpan(kind, start, end, text[start:end], "pattern", 1.0)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _isolated(text: str, start: int, end: int) -> bool:
    """Not glued to a word or to more of a dotted/dashed number on either side."""
    before, after = text[max(start - 2, 0):start], text[end:end + 2]
    if (before and _word_char(before[-1])) or (after and _word_char(after[0])):
        return False
    glued_before = len(before) == 2 and before[1] in ".-" and before[0].isdigit()
    glued_after = len(after) == 2 and after[0] in ".-" and after[1].isdigit()
    return not (glued_before or glued_after)


# ---- email ----------------------------------------------------------------------------------
def emails(text: str) -> Iterator[PiiSpan]:
    for m in _EMAIL.finditer(text):
        local, domain = m.group().split("@", 1)
        if _valid_local(local) and _valid_host(domain):
            yield _span("EMAIL_ADDRESS", text, m.start(), m.end())


def _valid_local(local: str) -> bool:
    return not (local.startswith(".") or local.endswith(".") or ".." in local)


def _valid_host(host: str) -> bool:
    labels = host.split(".")
    return (len(labels) >= 2 and all(labels) and labels[-1].isalpha() and len(labels[-1]) >= 2
            and not any(label.startswith("-") or label.endswith("-") for label in labels))


# ---- phone ----------------------------------------------------------------------------------
def phones(text: str, regions: tuple[str, ...] = PHONE_REGIONS) -> Iterator[PiiSpan]:
    seen: set[tuple[int, int]] = set()
    candidates = [(m.start(), m.end()) for m in _PHONE_CANDIDATE.finditer(text)]
    for i, (start, end) in enumerate(candidates):
        # the context never reaches into a neighbouring candidate: a window must not cut a number open
        low = max(start - PHONE_CONTEXT, candidates[i - 1][1] if i else 0)
        high = min(end + PHONE_CONTEXT, candidates[i + 1][0] if i + 1 < len(candidates) else len(text))
        for region in regions:
            for match in phonenumbers.PhoneNumberMatcher(text[low:high], region, leniency=phonenumbers.Leniency.VALID):
                span = (low + match.start, low + match.end)
                if span in seen or (not match.raw_string.startswith("+") and match.raw_string.isdigit()):
                    continue
                seen.add(span)
                yield _span("PHONE_NUMBER", text, *span)


# ---- credit card ----------------------------------------------------------------------------
def credit_cards(text: str) -> Iterator[PiiSpan]:
    for m in _CARD.finditer(text):
        raw = m.group()
        separators = {ch for ch in raw if not ch.isdigit()}
        if len(separators) > 1 or "  " in raw or "--" in raw or not _isolated(text, m.start(), m.end()):
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if luhn_valid(digits) and card_issuer(digits) is not None:
            yield _span("CREDIT_CARD", text, m.start(), m.end())


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (issuer, prefix ranges as (low, high) over the first len(low) digits, allowed lengths)
_ISSUERS = (
    ("visa", (("4", "4"),), {13, 16, 19}),
    ("mastercard", (("51", "55"), ("2221", "2720")), {16}),
    ("amex", (("34", "34"), ("37", "37")), {15}),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65")), set(range(16, 20))),
    ("unionpay", (("62", "62"),), set(range(16, 20))),
    ("diners", (("300", "305"), ("36", "36"), ("38", "39")), set(range(14, 20))),
    ("jcb", (("3528", "3589"),), set(range(16, 20))),
    ("maestro", (("50", "50"), ("56", "58"), ("63", "63"), ("67", "67")), set(range(13, 20))),
)


def card_issuer(digits: str) -> str | None:
    for issuer, ranges, lengths in _ISSUERS:
        if len(digits) in lengths and any(low <= digits[:len(low)] <= high for low, high in ranges):
            return issuer
    return None


# ---- IBAN -----------------------------------------------------------------------------------
def ibans(text: str) -> Iterator[PiiSpan]:
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2])
        end = _iban_end(m.group(), length) if length else None
        if end is None:
            continue
        compact = m.group()[:end].replace(" ", "")
        if iban_valid(compact) and not (m.start() + end < len(text) and _word_char(text[m.start() + end])):
            yield _span("IBAN_CODE", text, m.start(), m.start() + end)


def _iban_end(candidate: str, length: int) -> int | None:
    """Where the IBAN of `length` characters ends in `candidate` (single spaces allowed), or None."""
    count, previous = 0, ""
    for i, ch in enumerate(candidate):
        if ch == " " and previous == " ":
            return None
        if ch != " ":
            count += 1
            if count == length:
                return i + 1
        previous = ch
    return None


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# ---- US SSN ---------------------------------------------------------------------------------
def ssns(text: str) -> Iterator[PiiSpan]:
    for m in _SSN.finditer(text):
        raw = m.group()
        if raw[3] == raw[6] and _isolated(text, m.start(), m.end()) and ssn_valid(raw[:3] + raw[4:6] + raw[7:]):
            yield _span("US_SSN", text, m.start(), m.end())
    for m in _SSN_BARE.finditer(text):
        if ssn_valid(m.group(1)):
            yield _span("US_SSN", text, m.start(1), m.end(1))


def ssn_valid(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (len(digits) == 9 and digits.isdigit() and area not in ("000", "666") and area[0] != "9"
            and group != "00" and serial != "0000")


# ---- IP -------------------------------------------------------------------------------------
def ip_addresses(text: str) -> Iterator[PiiSpan]:
    for m in _IPV4.finditer(text):
        if _isolated(text, m.start(), m.end()) and _ip_valid(m.group(), ipaddress.IPv4Address):
            yield _span("IP_ADDRESS", text, m.start(), m.end())
    for m in _IPV6.finditer(text):
        start, end = m.start(), m.end()
        while end > start and text[end - 1] == ".":  # a sentence's full stop
            end -= 1
        candidate = text[start:end]
        if (candidate.count(":") >= 2 and any(ch.isdigit() for ch in candidate) and _isolated(text, start, end)
                and _ip_valid(candidate, ipaddress.IPv6Address)):
            yield _span("IP_ADDRESS", text, start, end)


def _ip_valid(candidate: str, kind: Callable) -> bool:
    try:
        kind(candidate)
    except ValueError:
        return False
    return True


# ---- URL and domain -------------------------------------------------------------------------
def urls(text: str) -> Iterator[PiiSpan]:
    for m in _URL.finditer(text):
        if m.start() > 0 and _word_char(text[m.start() - 1]):
            continue
        end = m.start() + len(_trim_url(m.group()))
        url = text[m.start():end]
        try:
            host = urlsplit(url if "://" in url else "http://" + url).hostname
        except ValueError:
            continue
        if host and (host == "localhost" or _valid_host(host) or _ip_valid(host, ipaddress.ip_address)):
            yield _span("URL", text, m.start(), end)


def _trim_url(url: str) -> str:
    """Drop trailing sentence punctuation and closing brackets the URL did not open."""
    while url:
        last = url[-1]
        if last in ".,;:!?'\"" or (last in ")]}" and url.count(last) > url.count({")": "(", "]": "[", "}": "{"}[last])):
            url = url[:-1]
        else:
            break
    return url


def domains(text: str) -> Iterator[PiiSpan]:
    for m in _DOMAIN.finditer(text):
        start, end = m.start(), m.end()
        before = text[start - 1] if start else ""
        after = text[end:end + 2]
        if before and (_word_char(before) or before in ".@/-"):
            continue
        if after and (after[0] in "(=[_-" or (after[0] == "." and len(after) == 2 and _word_char(after[1]))):
            continue
        if m.group().split(".")[0] in CODE_RECEIVERS or not _valid_host(m.group()):
            continue
        yield _span("DOMAIN_NAME", text, start, end)


RECOGNIZERS: tuple[Callable[[str], Iterator[PiiSpan]], ...] = (
    emails, urls, ibans, credit_cards, ssns, ip_addresses, phones, domains)
