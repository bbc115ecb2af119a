"""Regexes that come from the config run on RE2 (google-re2), never on Python's `re`.

Python's backtracking engine can take exponential time on a pattern such as `(a+)+$`, and
quadratic time on an innocent-looking one (`\\bselect\\b.+\\bfrom\\b` on "select " × 16000), with
the event loop blocked all along. RE2 matches in time linear in the text, whatever the
pattern; the price is that it has no backreferences and no lookaround, so such patterns
are refused when the config is loaded. RE2's `\\b`, `\\w` and `\\d` are ASCII-only.
"""
from __future__ import annotations

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the refusal is reported once, in the config error; not on stderr too


def compile_config_regex(pattern: str):
    """The compiled RE2 pattern, or ValueError saying why RE2 cannot run it."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a valid regular expression for RE2 ({reason}): config regexes run on RE2, which "
                         "matches in linear time but has no backreferences (\\1) and no lookaround ((?=...), "
                         "(?!...), (?<=...))") from None
