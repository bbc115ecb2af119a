"""Signals: text → tokens → Triton → every routing signal of one encoder pass.

The only module that knows Triton. Prompts longer than the model's window are read in
consecutive chunks (no silent truncation), sent together in one request, and folded back:
class probabilities are averaged by chunk length, jailbreak takes the worst chunk, PII spans
keep their character offsets in the original text (control/pii adds the validated pattern
spans), harmful takes the worst chunk like jailbreak. The language (control/language.py) is
detected here too, and says whether the heads can be trusted on this prompt.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from itertools import chain

import numpy as np
import tritonclient.grpc.aio as grpcclient
from opentelemetry.trace import SpanKind
from tokenizers import Tokenizer

from control import metrics
from control.language import Language, detect_language, reliability
from control.pii import PiiSpan, find_pii  # PiiSpan lives with its decoders; importable from here as before
from control.telemetry import TRACER, inject_headers
from export.base_model import tokenizer_file
from export.labels import MAX_SEQ_LEN, MODEL_NAME

OUTPUTS = ("embedding", "domain_probs", "task_probs", "jailbreak_prob", "strong_prob", "pii_logits", "harmful_prob")
_REQUESTED = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]  # built once: they never change
# Padded row widths (tokens), up to the chunk size. Eight shapes for Triton to batch together;
# on the bench's real prompts they cost 15% padding (powers of two alone: 26%, bench/RESULTS.md).
LENGTH_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256)


@dataclass
class ReadInfo:
    """How the text was read, so a long prompt never looks fully read when it was not."""
    tokens: int
    chunks: int
    chunk_tokens: int
    truncated: bool = False


@dataclass
class Signals:
    domain: dict[str, float]
    task: dict[str, float]
    jailbreak_prob: float
    strong_prob: float
    pii: list[PiiSpan]
    read: ReadInfo
    embedding: np.ndarray = field(repr=False)
    routes: dict[str, float] = field(default_factory=dict)  # embedding routes matched → similarity
    harmful_prob: float = 0.0   # the request itself seeks harmful help (worst chunk)
    language: Language = Language("und", 0.0)
    reliable: bool = True       # false: the language is one the heads were not trained on
    reliable_reason: str = ""

    @property
    def top_domain(self) -> tuple[str, float]:
        return max(self.domain.items(), key=lambda kv: kv[1])

    @property
    def top_task(self) -> tuple[str, float]:
        return max(self.task.items(), key=lambda kv: kv[1])

    def to_dict(self, with_embedding: bool = False) -> dict:
        out = asdict(self)
        out.pop("embedding")
        if with_embedding:
            out["embedding"] = self.embedding.round(6).tolist()
        return out


@dataclass
class Labels:
    """What the served model says about itself (config.pbtxt parameters)."""
    domains: list[str]
    tasks: list[str]
    pii_tags: list[str]
    max_batch_size: int
    strong_calibration: dict | None = None  # {"table": [{"strong_share", "threshold"}, ...]}
    pii_thresholds: dict[str, float] = field(default_factory=dict)  # per-type decode thresholds (control/pii/decode.py)
    languages: list[str] = field(default_factory=lambda: ["en"])    # ISO codes the heads were trained on

    @classmethod
    def from_model_config(cls, config: dict) -> "Labels":
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        missing = [n for n in OUTPUTS if n not in {o.get("name") for o in config.get("output", [])}]
        if missing:  # an old model: refuse at start rather than read a signal as 0
            raise RuntimeError(f"model '{config.get('name')}' has no output {', '.join(missing)}; the gateway needs "
                               f"{', '.join(OUTPUTS)}: rebuild the repository with `semroute export`")
        try:
            return cls(json.loads(params["domain_labels"]), json.loads(params["task_labels"]),
                       json.loads(params["pii_tags"]), int(config.get("max_batch_size", 0)) or 64,
                       _json_param(params, "strong_calibration", None), _json_param(params, "pii_thresholds", {}),
                       _json_param(params, "languages", ["en"]))
        except KeyError as exc:
            raise RuntimeError(f"model config of '{config.get('name')}' lacks label metadata {exc}; rebuild it with `semroute export`") from exc


def _json_param(params: dict[str, str], name: str, default):
    return json.loads(params[name]) if params.get(name) else default


@dataclass
class _Encoded:
    chunks: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    read: ReadInfo


class Classifier:
    """One shared async gRPC client; safe to call concurrently from many requests."""

    def __init__(self, triton_url: str, model_name: str = MODEL_NAME, chunk_tokens: int = MAX_SEQ_LEN):
        self.triton_url = triton_url
        self.model_name = model_name
        self.chunk_tokens = chunk_tokens
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file()))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self._cls, self._sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        self.client: grpcclient.InferenceServerClient | None = None
        self.labels: Labels | None = None

    async def start(self) -> None:
        """Connect and read the label lists from the model's metadata (raises if not ready)."""
        if self.client is None:
            self.client = grpcclient.InferenceServerClient(self.triton_url)
        config = await self.client.get_model_config(self.model_name, as_json=True)
        self.labels = Labels.from_model_config(config.get("config", config))

    async def ready(self) -> bool:
        try:
            if self.labels is None:
                await self.start()
            return bool(await self.client.is_model_ready(self.model_name))
        except Exception:  # any transport or server error means "not ready"
            return False

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    def encode(self, text: str) -> _Encoded:
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        ids, offsets, width = enc.ids, enc.offsets, self.chunk_tokens - 2
        starts = range(0, max(len(ids), 1), width)
        chunks = [[self._cls, *ids[s:s + width], self._sep] for s in starts]
        chunk_offsets = [[(0, 0), *offsets[s:s + width], (0, 0)] for s in starts]
        return _Encoded(chunks, chunk_offsets, ReadInfo(tokens=len(ids), chunks=len(chunks), chunk_tokens=self.chunk_tokens))

    async def classify(self, texts: list[str]) -> list[Signals]:
        if self.labels is None:
            await self.start()
        with TRACER.start_as_current_span("tokenize", attributes={"semroute.texts": len(texts)}):
            encoded = [self.encode(t) for t in texts]
        rows = [c for e in encoded for c in e.chunks]
        groups = bucket_rows([len(r) for r in rows], self.labels.max_batch_size)
        parts = await asyncio.gather(*(self._infer([rows[i] for i in index], width) for index, width in groups))
        out = _scatter(len(rows), [index for index, _ in groups], parts)
        signals, row = [], 0
        for text, enc in zip(texts, encoded):
            n = len(enc.chunks)
            signals.append(self._fold(text, enc, {k: v[row:row + n] for k, v in out.items()}))
            row += n
        return signals

    async def _infer(self, rows: list[list[int]], width: int) -> dict[str, np.ndarray]:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        ids = np.zeros_like(mask)
        # Right-padded in one vectorised store: the mask's True cells are the tokens, row by row.
        ids[mask.astype(bool)] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        inputs = [grpcclient.InferInput("input_ids", list(ids.shape), "INT64"),
                  grpcclient.InferInput("attention_mask", list(mask.shape), "INT64")]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        attributes = {"semroute.triton.model": self.model_name, "semroute.triton.batch": len(rows),
                      "semroute.triton.seq_len": width}
        with TRACER.start_as_current_span("triton.infer", kind=SpanKind.CLIENT, attributes=attributes):
            start = time.perf_counter()
            # traceparent as gRPC metadata: Triton's own spans join this trace under this span.
            result = await self.client.infer(self.model_name, inputs, outputs=_REQUESTED, headers=inject_headers())
            metrics.TRITON_SECONDS.observe(time.perf_counter() - start)
        return {n: result.as_numpy(n) for n in OUTPUTS}

    def _fold(self, text: str, enc: _Encoded, out: dict[str, np.ndarray]) -> Signals:
        weights = np.array([len(c) - 2 for c in enc.chunks], dtype=np.float64).clip(min=1)
        weights /= weights.sum()
        emb = (out["embedding"] * weights[:, None]).sum(0)
        language = detect_language(text)
        reliable, why = reliability(language, self.labels.languages)
        return Signals(
            domain=_named(self.labels.domains, weights @ out["domain_probs"]),
            task=_named(self.labels.tasks, weights @ out["task_probs"]),
            jailbreak_prob=round(float(out["jailbreak_prob"].max()), 6),
            strong_prob=round(float(weights @ out["strong_prob"][:, 0]), 6),
            pii=find_pii(text, enc.offsets, out["pii_logits"], self.labels.pii_tags, self.labels.pii_thresholds),
            read=enc.read,
            embedding=(emb / max(np.linalg.norm(emb), 1e-12)).astype(np.float32),
            harmful_prob=round(float(out["harmful_prob"].max()), 6),
            language=language, reliable=reliable, reliable_reason=why,
        )


def _named(names: list[str], probs: np.ndarray) -> dict[str, float]:
    return {n: round(float(p), 6) for n, p in zip(names, probs)}


def bucket_width(length: int, buckets: tuple[int, ...] = LENGTH_BUCKETS) -> int:
    """The padded width of a row: the smallest bucket that holds it (a longer row keeps its length)."""
    return next((b for b in buckets if b >= length), length)


def bucket_rows(lengths: list[int], max_batch: int) -> list[tuple[list[int], int]]:
    """Row indices grouped by padded width, at most `max_batch` per group: one Triton request each.

    A short row never pays for a long one's padding, so a prompt costs in proportion to its
    length, and every worker sends the same few shapes, which Triton's dynamic batcher merges
    (a model without ragged batching only merges equal shapes).
    """
    by_width: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_width.setdefault(bucket_width(n), []).append(i)
    return [(index[s:s + max_batch], width) for width, index in sorted(by_width.items())
            for s in range(0, len(index), max_batch)]


def _scatter(n_rows: int, groups: list[list[int]], parts: list[dict[str, np.ndarray]]) -> dict:
    """Per-group outputs back in row order; pii_logits stays one array per row (widths differ)."""
    out: dict = {}
    for index, part in zip(groups, parts):
        for name, value in part.items():
            if name == "pii_logits":
                rows = out.setdefault(name, [None] * n_rows)
                for j, i in enumerate(index):
                    rows[i] = value[j]
            else:
                out.setdefault(name, np.empty((n_rows, *value.shape[1:]), dtype=value.dtype))[index] = value
    return out


def timed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
