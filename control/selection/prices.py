"""Prices (USD per 1M tokens, input + output: one request's price in the goal tables) for the
shipped outcome sources that carry none.

MMLU-Pro's 29 models: a provider's public list price where the model is sold by the token
(Gemini, Jamba, Command R, DeepSeek, and the NVIDIA NIM table in
shared/data/train/multi_model/default_llm.json for the models it lists by the same name);
otherwise by parameter count on the brackets that same NIM table follows. Every price says
which it is (`price_source`), and eval-selection prints it per model.
"""
from __future__ import annotations

import re

# Provider list prices, USD per 1M tokens (input, output), 2024 (recalled from the providers'
# pricing pages, not fetched: nothing is downloaded here; edit when they change).
LIST_PRICES = {
    "gemini-1.5-pro-002": (1.25, 5.00, "Google AI Studio list price (≤128k context), 2024"),
    "gemini-1.5-flash-002": (0.075, 0.30, "Google AI Studio list price (≤128k context), 2024"),
    "jamba-1.5-large": (2.00, 8.00, "AI21 list price, 2024"),
    "c4ai-command-r-v01": (0.15, 0.60, "Cohere Command R list price, Aug 2024"),
    "DeepSeek-Coder-V2": (0.14, 0.28, "DeepSeek API list price, 2024"),
    # the NIM table beside the DC-Router data names these exactly
    "Mixtral-8x7B-Instruct-v0.1": (0.60, 0.60, "NIM price table (default_llm.json): mixtral-8x7b-instruct-v0.1"),
    "Meta-Llama-3_1-8B-Instruct": (0.20, 0.20, "NIM price table (default_llm.json): llama-3.1-8b-instruct"),
}

# Total parameters (billions) of the open models without a per-token list price of their own.
PARAMETERS_B = {
    "Llama-2-7b-hf": 7, "Llama-2-13b-hf": 13, "Llama-2-70b-hf": 70, "Meta-Llama-3-8B": 8, "Meta-Llama-3-70B": 70,
    "Meta-Llama-3_1-8B": 8, "Meta-Llama-3_1-70B": 70, "Meta-Llama-3_1-70B-Instruct": 70,
    "Mistral-7B-v0.1": 7, "Mistral-7B-v0.2-hf": 7, "Mistral-7B-Instruct-v0.1": 7, "Mistral-7B-Instruct-v0.2": 7,
    "Mixtral-8x7B-v0.1": 47, "Phi-3-mini-4k-instruct": 3.8, "Qwen1.5-7B-Chat": 7, "Qwen1.5-72B-Chat": 72,
    "Qwen1.5-110B": 110, "Yi-6B": 6, "Yi-6b-Chat": 6, "Yi-34B": 34, "gemma-7b": 8.5, "mathstral-7B": 7,
}

# (up to this many billion parameters, USD per 1M input = output tokens): the NIM table's
# steps (7-9B 0.20, 12B 0.30, Mixtral-8x7B 0.60, 49-70B 0.90, 122-141B 1.20-1.80).
PARAMETER_BRACKETS = ((4, 0.10), (10, 0.20), (20, 0.30), (50, 0.60), (80, 0.90), (float("inf"), 1.20))

ROUTELLM_PRICES = {
    "mixtral-8x7b-instruct-v0.1": (1.20, "NIM price table (default_llm.json): 0.60 + 0.60"),
    "gpt-4-1106-preview": (40.0, "OpenAI list price: 10 input + 30 output"),
}


def price_by_parameters(billions: float) -> float:
    per_token = next(p for limit, p in PARAMETER_BRACKETS if billions <= limit)
    return 2 * per_token


def mmlu_pro_prices(models: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    prices, sources = {}, {}
    for model in models:
        if model in LIST_PRICES:
            inp, out, why = LIST_PRICES[model]
            prices[model], sources[model] = round(inp + out, 6), f"list price: {why}"
        else:
            billions = PARAMETERS_B.get(model) or _size_from_name(model)
            if billions is None:
                raise ValueError(f"no price for model {model!r}: add it to control/selection/prices.py")
            prices[model] = price_by_parameters(billions)
            sources[model] = f"parameter count: {billions:g}B on the NIM table's brackets"
    return prices, sources


def _size_from_name(model: str) -> float | None:
    found = re.search(r"(\d+(?:\.\d+)?)[bB]\b", model)
    return float(found.group(1)) if found else None
