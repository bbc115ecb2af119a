"""The decision core: signals + request features + config → which backends answer. Pure: no I/O.

- `core.decide` runs the steps (safety, selectors, sessions, PII, cost); without signals it
  makes the degraded decision with the same code.
- A rule's conditions are one table, control/config/when.py; selectors are classes behind one
  interface (`selector.py`), the built-ins in `selectors.py`.
- `candidates.narrow` drops backends that cannot serve a request and says why.
"""
from control.decision.core import UNCHECKED_PII, decide, passthrough
from control.decision.safety import Blocked
from control.decision.values import Candidate, Decision, PolicyContext, Proposal, RequestFeatures

__all__ = ["Blocked", "Candidate", "Decision", "PolicyContext", "Proposal", "RequestFeatures", "UNCHECKED_PII",
           "decide", "passthrough"]
