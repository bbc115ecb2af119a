"""Training sources of the two safety heads (v2).

- `jailbreak`: an attack on the model — role-play / override templates (verazuo in-the-wild
  prompts) and indirect prompt injection (BIPIA attack strings composed into pasted content).
- `harmful`: the request itself seeks harmful help, however plainly asked (HarmBench,
  StrongREJECT, AdvBench, verazuo's forbidden questions, CoCoNot's unsafe requests, MultiJail
  in the languages that also have benign data, HH-RLHF red-team first turns as a weak label).

A plain harmful request is not a jailbreak and a jailbreak template need not carry a harmful
request: those cross labels are left missing (-1), so neither head is taught the other's job.
Benign look-alikes (CoCoNot contrasts, its non-safety non-compliance prompts) are negatives of
both heads; every other benign source becomes a negative in data.safety_negatives.
"""
from __future__ import annotations

import random

from export.data import Example, Files

# HH-RLHF red-team first turns are attempts, many of them mild or benign in the end: a soft target.
HH_REDTEAM_TARGET = 0.7
# MultiJail languages that also have benign prompts here (XQuAD, BELLE): a language with only
# harmful data would teach the head that the language itself is harmful.
MULTIJAIL_LANGS = ("en", "zh", "ar", "th", "vi")
BIPIA_INJECTED = 900   # composed injected prompts (and as many clean ones from the same contexts)


def load_jailbreak_templates(fs: Files) -> list[Example]:
    rows = fs.csv("train/jailbreak_llms_verazuo/jailbreak_prompts_2023_12_25.csv")
    return [Example(r["prompt"], "verazuo_jailbreak", r["prompt"], jailbreak=1) for r in rows if r["prompt"].strip()]


def load_harmful_requests(fs: Files) -> list[Example]:
    out = [Example(r["question"], "verazuo_forbidden", r["question"], harmful=1.0)
           for r in fs.csv("train/jailbreak_llms_verazuo/forbidden_question_set.csv")]
    out += [Example(r["goal"], "advbench", r["goal"], harmful=1.0) for r in fs.csv("train/advbench/harmful_behaviors.csv")]
    for r in fs.csv("train/harmful_requests/harmbench_behaviors_text_all.csv"):
        # copyright requests ("the lyrics of ...") are a licensing matter, not harm to people
        if r["SemanticCategory"] == "copyright":
            continue
        text = r["Behavior"] + (f"\n\n{r['ContextString']}" if r["ContextString"].strip() else "")
        out.append(Example(text, "harmbench", r["Behavior"], harmful=1.0))
    out += [Example(r["forbidden_prompt"], "strongreject", r["forbidden_prompt"], harmful=1.0)
            for r in fs.csv("train/harmful_requests/strongreject_dataset.csv")]
    out += [Example(r["prompt"], "hh_redteam", r["prompt"], harmful=HH_REDTEAM_TARGET)
            for r in fs.jsonl("train/hh_rlhf_redteam/harmless_base_test_first_turns.jsonl")]
    for r in fs.jsonl("train/multijail/multijail.jsonl"):
        if r["lang"] in MULTIJAIL_LANGS:
            # grouped by the prompt id: every translation of one prompt falls in the same split
            out.append(Example(r["prompt"], f"multijail_{r['lang']}", f"multijail {r['multijail_id']}",
                               harmful=1.0, lang=r["lang"]))
    return out


def load_coconot(fs: Files) -> list[Example]:
    """Unsafe requests are harmful; the benign contrasts and the other non-compliance kinds
    (incomplete, unsupported, humanising requests) are negatives of both heads."""
    out = []
    for name in ("coconot_eval_prompts", "coconot_pref_prompts", "coconot_contrast_eval_prompts"):
        for r in fs.jsonl(f"train/coconot/{name}.jsonl"):
            unsafe = r["category"] == "Requests with safety concerns" and r["label"] == "should_refuse_or_noncomply"
            source = "coconot_unsafe" if unsafe else "coconot_benign"
            out.append(Example(r["prompt"], source, r["prompt"], harmful=1.0 if unsafe else 0.0, jailbreak=0))
    return out


def _bipia_contexts(fs: Files) -> list[tuple[str, str]]:
    """(question, pasted content) pairs from BIPIA's email, table and code train files."""
    out = []
    for r in fs.jsonl("train/bipia/bipia_raw/email_train.jsonl"):
        out.append((r["question"].removeprefix("Q: "), r["context"]))
    for r in fs.jsonl("train/bipia/bipia_raw/table_train.jsonl"):
        out.append((r["question"], r["context"]))
    for r in fs.jsonl("train/bipia/bipia_raw/code_train.jsonl"):
        question = "Fix the error in this code.\n" + "\n".join(r["code"]) + "\n" + "\n".join(r["error"])
        out.append((question, "\n".join(r["context"])))
    return out


def load_bipia(fs: Files, seed: int = 0) -> list[Example]:
    """Clean prompts (task + pasted content) and injected ones: an attack string inserted at the
    start, middle or end of the content. Test attack files are never used."""
    rng = random.Random(seed)
    attacks = [a for name in ("text_attack_train", "code_attack_train")
               for group in fs.json(f"train/bipia/bipia_raw/{name}.json").values() for a in group]
    contexts = _bipia_contexts(fs)
    rng.shuffle(contexts)
    out = []
    for i, (question, context) in enumerate(contexts[:2 * BIPIA_INJECTED]):
        group = f"bipia {question[:80]} {context[:80]}"
        if i % 2 == 0:
            text = f"{question}\n\n### External content:\n{context}"
            out.append(Example(text, "bipia_clean", group, jailbreak=0, harmful=0.0))
            continue
        attack, where = rng.choice(attacks), rng.choice(("start", "middle", "end"))
        cut = {"start": 0, "middle": len(context) // 2, "end": len(context)}[where]
        injected = f"{context[:cut]}\n{attack}\n{context[cut:]}"
        out.append(Example(f"{question}\n\n### External content:\n{injected}", "bipia_injected", group,
                           jailbreak=1))
    return out
