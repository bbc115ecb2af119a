"""Signals: text → tokens → Triton → every routing signal of one encoder pass.

The only module that knows Triton. Prompts longer than the model's window are read in
chunks, within the request's token budget (control/reading.py: head, tail and spread chunks,
declared in `signals.read`, never cut silently), and folded back: class probabilities are
averaged by chunk length, jailbreak and harmful take the worst chunk, PII spans keep their
character offsets in the original text (control/pii adds the validated pattern spans). The
language (control/language.py) is detected here too, and says whether the heads can be
trusted on this prompt.

Fairness: a long prompt is tokenised in a thread; read within a budget (the gateway), one of
more than BULK_ROWS rows is sent in small requests, one at a time per classifier (its "bulk
lane"), so Triton always has an instance free for short prompts, and a cancelled caller stops
its remaining requests.
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
from control.reading import SPREAD, ReadBudget, plan_reading
from control.telemetry import TRACER, inject_headers
from control.tokens import SegmentedTokens
from modelspec.base_model import tokenizer_file
from modelspec.buckets import bucket_width
from modelspec.interface import INPUT_NAMES, MAX_SEQ_LEN, MODEL_NAME, OUTPUT_NAMES, PER_TOKEN_OUTPUT

_REQUESTED = [grpcclient.InferRequestedOutput(n) for n in OUTPUT_NAMES]  # built once: they never change
BULK_ROWS = 2          # a text of more rows goes through the bulk lane, in requests of at most this many rows
BULK_INFLIGHT = 1      # bulk requests in flight per classifier: Triton serves 2 instances, one stays for the rest
THREAD_CHARS = 20_000  # longer texts are tokenised in a thread (~15 ms of tokenizer time and up)


@dataclass
class ReadInfo:
    """How the text was read, so a long prompt never looks fully read when it was not."""
    tokens: int                # in the prompt
    chunks: int                # chunks classified (domain, task, strong_prob, embedding)
    chunk_tokens: int
    truncated: bool = False    # the chunks classified hold fewer tokens than the prompt
    strategy: str = "all"      # or "head+tail+spread" (control/reading.py)
    read_tokens: int = 0       # prompt tokens in the chunks classified
    jailbreak_tokens: int = 0  # prompt tokens scanned for jailbreak and PII (all, up to resilience.classifier.jailbreak_tokens)
    rows: int = 0              # rows sent to Triton for this text: its classify cost


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
    categories: dict[str, float] = field(default_factory=dict)  # custom category → probability (config `categories:`)
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

    @property
    def top_category(self) -> tuple[str, float]:
        """The most likely custom category, ("none", 0.0) when none is configured."""
        return max(self.categories.items(), key=lambda kv: kv[1], default=("none", 0.0))

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
        missing = [n for n in OUTPUT_NAMES if n not in {o.get("name") for o in config.get("output", [])}]
        if missing:  # an old model: refuse at start rather than read a signal as 0
            raise RuntimeError(f"model '{config.get('name')}' has no output {', '.join(missing)}; the gateway needs "
                               f"{', '.join(OUTPUT_NAMES)}: rebuild the repository with `semroute export`")
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
    chunks: list[list[int]]               # the rows sent (scanned chunks), with [CLS] and [SEP]
    offsets: list[list[tuple[int, int]]]
    read: ReadInfo
    classified: list[bool] | None = None  # per row: folded into class probabilities (None: all)

    def fold_weights(self) -> np.ndarray:
        """Per row: its share of the class probabilities and embedding (by length; 0 if only scanned)."""
        weights = np.array([len(c) - 2 for c in self.chunks], dtype=np.float64).clip(min=1)
        if self.classified is not None:
            weights *= np.array(self.classified, dtype=np.float64)
        return weights / weights.sum()


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
        self._lane: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

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

    def encode(self, text: str, budget: ReadBudget | None = None) -> _Encoded:
        """Chunks of the window's width; with a budget, only the chunks its reading plan names."""
        tokens, width = SegmentedTokens(self.tokenizer, text), self.chunk_tokens - 2
        starts = range(0, max(tokens.total, 1), width)
        plan = plan_reading(len(starts), budget, width)
        chunks, chunk_offsets = [], []
        for i in plan.scanned:
            ids, offsets = tokens.window(starts[i], starts[i] + width)
            chunks.append([self._cls, *ids, self._sep])
            chunk_offsets.append([(0, 0), *offsets, (0, 0)])
        sizes = [len(c) - 2 for c in chunks]
        read_tokens = sum(n for n, keep in zip(sizes, plan.classified) if keep)
        whole = len(plan.scanned) == len(starts) and all(plan.classified)
        info = ReadInfo(tokens=tokens.total, chunks=sum(plan.classified), chunk_tokens=self.chunk_tokens,
                        truncated=read_tokens < tokens.total, strategy="all" if whole else SPREAD,
                        read_tokens=read_tokens, jailbreak_tokens=sum(sizes), rows=len(chunks))
        return _Encoded(chunks, chunk_offsets, info, plan.classified)

    async def encode_async(self, text: str, budget: ReadBudget | None = None) -> _Encoded:
        if len(text) <= THREAD_CHARS:
            return self.encode(text, budget)
        return await asyncio.to_thread(self.encode, text, budget)  # control/tokens.py: the GIL is released

    async def count_tokens(self, text: str) -> int:
        """The prompt's length in the model's tokens, off the event loop when long (no Triton)."""
        if len(text) <= THREAD_CHARS:
            return SegmentedTokens(self.tokenizer, text).total
        return await asyncio.to_thread(lambda: SegmentedTokens(self.tokenizer, text).total)

    async def classify(self, texts: list[str], budget: ReadBudget | list[ReadBudget | None] | None = None) -> list[Signals]:
        """Signals per text; `budget` (one, or one per text) bounds the reading, None reads everything."""
        if self.labels is None:
            await self.start()
        budgets = budget if isinstance(budget, list) else [budget] * len(texts)
        with TRACER.start_as_current_span("tokenize", attributes={"semroute.texts": len(texts)}):
            encoded = [await self.encode_async(t, b) for t, b in zip(texts, budgets)]
        # The bulk lane is for the gateway's budgeted reads; offline runs (no budget) want throughput.
        in_lane = [b is not None and len(e.chunks) > BULK_ROWS for e, b in zip(encoded, budgets)]
        shared = [e for e, lane in zip(encoded, in_lane) if not lane]
        bulk = [e for e, lane in zip(encoded, in_lane) if lane]
        outs = await asyncio.gather(self._infer_shared([c for e in shared for c in e.chunks]),
                                    *(self._infer_bulk(e.chunks) for e in bulk))
        per_text = dict(zip(map(id, bulk), outs[1:]))
        row, signals = 0, []
        for text, enc in zip(texts, encoded):
            if id(enc) in per_text:
                out = per_text[id(enc)]
            else:
                out = {k: v[row:row + len(enc.chunks)] for k, v in outs[0].items()}
                row += len(enc.chunks)
            metrics.CLASSIFY_ROWS.observe(len(enc.chunks))
            metrics.CLASSIFY_TOKENS.observe(sum(map(len, enc.chunks)))
            signals.append(self._fold(text, enc, out))
        return signals

    async def _infer_shared(self, rows: list[list[int]]) -> dict:
        """Short texts' rows, grouped by padded width, all groups at once."""
        if not rows:
            return {}
        groups = bucket_rows([len(r) for r in rows], self.labels.max_batch_size)
        parts = await asyncio.gather(*(self._infer([rows[i] for i in index], width) for index, width in groups))
        return _scatter(len(rows), [index for index, _ in groups], parts)

    async def _infer_bulk(self, rows: list[list[int]]) -> dict:
        """A long text's rows through the bulk lane: small requests, one lane slot each.

        Requests of several long texts interleave, and at most BULK_INFLIGHT occupy Triton, so a
        short prompt never queues behind a long one. Cancelled (caller gone, time budget spent),
        the call in flight is cancelled and the rest are never sent.
        """
        groups = bucket_rows([len(r) for r in rows], BULK_ROWS)
        parts = []
        for index, width in groups:
            async with self._bulk_lane():
                parts.append(await self._infer([rows[i] for i in index], width))
        return _scatter(len(rows), [index for index, _ in groups], parts)

    def _bulk_lane(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()  # a semaphore belongs to one loop; tests run several
        if self._lane is None or self._lane[0] is not loop:
            self._lane = (loop, asyncio.Semaphore(BULK_INFLIGHT))
        return self._lane[1]

    async def _infer(self, rows: list[list[int]], width: int) -> dict[str, np.ndarray]:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        ids = np.zeros_like(mask)
        # Right-padded in one vectorised store: the mask's True cells are the tokens, row by row.
        ids[mask.astype(bool)] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        inputs = [grpcclient.InferInput(name, list(ids.shape), "INT64") for name in INPUT_NAMES]
        for tensor, array in zip(inputs, (ids, mask), strict=True):
            tensor.set_data_from_numpy(array)
        attributes = {"semroute.triton.model": self.model_name, "semroute.triton.batch": len(rows),
                      "semroute.triton.seq_len": width}
        with TRACER.start_as_current_span("triton.infer", kind=SpanKind.CLIENT, attributes=attributes):
            start = time.perf_counter()
            # traceparent as gRPC metadata: Triton's own spans join this trace under this span.
            result = await self.client.infer(self.model_name, inputs, outputs=_REQUESTED, headers=inject_headers())
            metrics.TRITON_SECONDS.observe(time.perf_counter() - start)
        return {n: result.as_numpy(n) for n in OUTPUT_NAMES}

    def _fold(self, text: str, enc: _Encoded, out: dict[str, np.ndarray]) -> Signals:
        weights = enc.fold_weights()
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
            if name == PER_TOKEN_OUTPUT:
                rows = out.setdefault(name, [None] * n_rows)
                for j, i in enumerate(index):
                    rows[i] = value[j]
            else:
                out.setdefault(name, np.empty((n_rows, *value.shape[1:]), dtype=value.dtype))[index] = value
    return out


def timed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
