"""Custom categories from examples: held-out accuracy and start-up cost, through the real Triton.

Three categories a support desk might define (billing, shipping, account access), each with 12
training examples written for this bench and 8 held-out paraphrases, plus 40 held-out prompts
that are none of them (sampled from eval/alpaca_eval instructions, never trained on). Prints one
JSON object: accuracy on in-category prompts, the false-category rate on the others at the
routing threshold 0.5, and the fit time.

    python -m bench.custom_categories [--triton-url 127.0.0.1:8001]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from control.categories import CustomCategories
from control.config.routing import CustomCategory
from control.signals import Classifier

TRAIN = {
    "billing": ["Why was I charged twice this month?", "Can I get an invoice for my last payment?",
                "My credit card was billed the wrong amount", "How do I update my payment method?",
                "I want a refund for the subscription renewal", "What does the extra fee on my bill mean?",
                "Can I switch from monthly to yearly billing?", "The charge on my statement is higher than the price",
                "Please cancel the automatic payment", "Do you accept PayPal for paying the invoice?",
                "I was billed after I cancelled", "Where can I download my receipts?"],
    "shipping": ["Where is my package?", "My order hasn't arrived yet, it's been two weeks",
                 "Can I change the delivery address for my order?", "How long does shipping to Canada take?",
                 "The tracking number doesn't work", "Do you offer express delivery?",
                 "My parcel was delivered to the wrong house", "Can I pick up the order at a store instead?",
                 "Why is my shipment stuck in customs?", "How much does international shipping cost?",
                 "The courier left my box in the rain and it's damaged", "When will my order be dispatched?"],
    "account": ["I can't log in to my account", "How do I reset my password?",
                "I never received the verification email", "My account was locked after too many attempts",
                "How do I turn on two-factor authentication?", "Someone else logged into my account",
                "Can I change the email address on my profile?", "How do I delete my account?",
                "The login page says my username doesn't exist", "I lost the phone with my authenticator app",
                "How can I merge two accounts?", "Why was I signed out of every device?"],
}
HELD_OUT = {
    "billing": ["I see two identical payments on my card", "Send me a copy of the bill for March please",
                "How can I pay with a different card next time?", "You charged me for a plan I don't have",
                "Is there a late payment fee?", "I'd like my money back for last month",
                "Why did my subscription price go up?", "Stop renewing my plan automatically"],
    "shipping": ["Has my order shipped yet?", "The package says delivered but I don't have it",
                 "Can you ship to a PO box?", "What's the delivery time for Germany?",
                 "My tracking page hasn't updated in five days", "Can the courier come on Saturday?",
                 "The box arrived crushed", "Do you ship overnight?"],
    "account": ["Forgot my password, help", "My login code never arrives",
                "I think my account got hacked", "How do I change my username?",
                "It keeps saying wrong password even though it's right", "Please close my account permanently",
                "How do I set up an authenticator?", "I'm locked out of my profile"],
}


def others(data_dir: Path, n: int = 40) -> list[str]:
    rows = json.loads((data_dir / "eval" / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json").read_text())
    return [r["instruction"] for r in rows[:: max(1, len(rows) // n)]][:n]


async def measure(triton_url: str, data_dir: Path) -> dict:
    classifier = Classifier(triton_url)
    await classifier.start()
    categories = [CustomCategory(name=name, examples=texts) for name, texts in TRAIN.items()]
    start = time.perf_counter()
    custom = CustomCategories(categories, cache_dir=Path(tempfile.mkdtemp()))
    await custom.prepare(classifier)
    prepare_s = time.perf_counter() - start
    texts = [t for ts in HELD_OUT.values() for t in ts]
    truth = [name for name, ts in HELD_OUT.items() for _ in ts]
    outside = others(data_dir)
    signals = await classifier.classify(texts + outside)
    tops = [max(p.items(), key=lambda kv: kv[1]) for p in (custom.predict(s.embedding) for s in signals)]
    inside_hits = sum(label == want and p >= 0.5 for (label, p), want in zip(tops, truth))
    false = sum(p >= 0.5 for _, p in tops[len(texts):])
    await classifier.close()
    return {"held_out_in_category": len(texts), "accuracy_at_0.5": round(inside_hits / len(texts), 3),
            "outside_prompts": len(outside), "false_category_rate_at_0.5": round(false / len(outside), 3),
            "prepare_s_cold": round(prepare_s, 2), "examples": sum(len(v) for v in TRAIN.values())}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triton-url", default=None)
    parser.add_argument("--data-dir", default=os.environ.get("SEMROUTE_DATA_DIR", "../shared/data"))
    args = parser.parse_args()
    if args.triton_url:
        print(json.dumps(asyncio.run(measure(args.triton_url, Path(args.data_dir)))))
        return 0
    from bench.common import free_port
    from control.tritonserver import TritonServer
    ports = [free_port() for _ in range(3)]
    with TritonServer(Path("model_repository"), *ports) as server:
        print(json.dumps(asyncio.run(measure(server.grpc_url, Path(args.data_dir)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
