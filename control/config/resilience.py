"""The `resilience:` section: retries, backoff, circuit breakers and the classifier's time budget."""
from __future__ import annotations

from pydantic import Field, model_validator

from control.config.base import Strict


class Circuit(Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    cooldown_s: float = Field(30.0, gt=0, description="how long an open circuit is skipped before one probe request")


class ClassifierBudget(Strict):
    timeout_s: float = Field(2.0, gt=0, description="classification time budget per request; past it the request "
                                                     "is routed without the classifier (degraded)")
    circuit: Circuit = Circuit(failures=3, cooldown_s=5.0)
    # Token budgets per prompt (control/reading.py); defaults sized for the CPU Triton, where a
    # 256-token row costs 110 ms idle, 270 ms on a loaded machine: 4 rows fit the 2 s budget.
    read_tokens: int = Field(768, ge=1, description="prompt tokens classified (domain, task, strong_prob, embedding);"
                                                      " a longer prompt is read as head, tail and evenly spread chunks")
    jailbreak_tokens: int = Field(1024, ge=1, description="prompt tokens scanned for jailbreak and PII: a prompt up to "
                                                           "this is scanned whole, a longer one in spread chunks; "
                                                           "bounds the Triton work of one request")

    @model_validator(mode="after")
    def _scan_covers_reading(self) -> "ClassifierBudget":
        if self.jailbreak_tokens < self.read_tokens:
            raise ValueError(f"jailbreak_tokens ({self.jailbreak_tokens}) must be at least read_tokens "
                             f"({self.read_tokens}): the classified chunks are among the scanned ones")
        return self


class Resilience(Strict):
    """The `resilience:` section: how upstream failures are retried and failed over."""
    retries: int = Field(1, ge=0, le=10, description="extra attempts on the same backend after a retryable failure")
    backoff_s: float = Field(0.2, ge=0, description="first backoff before a retry; doubles each retry, full jitter")
    backoff_max_s: float = Field(5.0, ge=0, description="longest backoff")
    max_attempts: int = Field(4, ge=1, description="upstream attempts for one request, all candidates together")
    retry_after_max_s: float = Field(5.0, ge=0, description="a backend's Retry-After up to this is waited for on the "
                                                             "same backend; a longer one moves to the next candidate")
    circuit: Circuit = Circuit()
    classifier: ClassifierBudget = ClassifierBudget()
