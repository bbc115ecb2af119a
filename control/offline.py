"""`semroute route` and `semroute classify`: the gateway's signals and policy, from the shell."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from control.serving.explain import explain, timings
from control.config import load_config
from control.protocol import APIError, RouteRequest
from control.router import Router
from control.signals import Classifier

BATCH = 32  # texts per Triton call; chunks of long texts ride along in the same request


def run_route(args) -> int:
    config = load_config(args.config)
    print(json.dumps(asyncio.run(_route(config, args.triton_url, args.text)), indent=2))
    return 0


async def _route(config, triton_url: str, text: str) -> dict:
    """The same decision the gateway's /v1/route gives (blocked prompts say why)."""
    classifier = Classifier(triton_url)
    router = Router(config, classifier)
    try:
        await _start(classifier)
        await router.start()
        routed = await router.route(RouteRequest(text=text).as_chat())
        return {**explain(routed), "timings_ms": timings(routed)}
    except APIError as err:
        return err.body()
    finally:
        await classifier.close()


def run_classify(args) -> int:
    texts = read_texts(args.input)
    count = asyncio.run(_classify(args.triton_url, texts, args.output))
    print(f"classified {count} inputs → {args.output}", file=sys.stderr)
    return 0


def read_texts(path: Path) -> list[str]:
    """Every line's routing text; a bad line stops the run with its line number."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                texts.append(RouteRequest.model_validate(json.loads(line)).routing_text())
            except (json.JSONDecodeError, ValidationError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: expected {{\"text\": ...}} or {{\"messages\": [...]}}: {exc}") from None
    return texts


async def _classify(triton_url: str, texts: list[str], output: Path) -> int:
    classifier = Classifier(triton_url)
    try:
        await _start(classifier)
        batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
        with tqdm(total=len(texts), desc="classify", unit="text", file=sys.stderr) as progress:
            async def classify(batch: list[str]):
                signals = await classifier.classify(batch)
                progress.update(len(batch))
                return signals
            results = await asyncio.gather(*(classify(b) for b in batches))
    finally:
        await classifier.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for signals in (s for batch in results for s in batch):
            f.write(json.dumps(signals.to_dict(), ensure_ascii=False) + "\n")
    return len(texts)


async def _start(classifier: Classifier) -> None:
    try:
        await classifier.start()
    except Exception as exc:
        raise ConnectionError(f"cannot reach the router model on Triton at {classifier.triton_url} "
                              f"(start it with `semroute triton` or `semroute up`): {exc}") from None
