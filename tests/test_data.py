"""Data assembly: label mappings, dedupe against eval/, splits, PII spans and their token tags."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from export import data, features, training_set
from export.domain_map import MMLU_TO_MMLU_PRO
from modelspec import labels

try:
    ROOT = data.resolve_data_dir()
except FileNotFoundError:  # pragma: no cover - the staged data is part of the workplace
    ROOT = None
needs_data = pytest.mark.skipif(ROOT is None, reason="staged data (../shared/data) not present")


@pytest.fixture(scope="module")
def assembled():
    return training_set.assemble(ROOT, synth_pii=300, seed=0, verbose=False)


def test_normalize_folds_case_punctuation_and_space():
    assert data.normalize("  What's  the\nTIME?? ") == data.normalize("what s the time") == "what s the time"


@needs_data
def test_domain_map_covers_every_mmlu_subject_with_a_known_domain():
    subjects = {p.stem.rsplit("_", 1)[0] for p in (ROOT / "train/mmlu/dev").glob("*.csv")}
    assert len(subjects) == 57 and subjects == set(MMLU_TO_MMLU_PRO)
    assert set(MMLU_TO_MMLU_PRO.values()) == set(labels.DOMAINS)
    assert MMLU_TO_MMLU_PRO["high_school_macroeconomics"] == "economics"
    assert MMLU_TO_MMLU_PRO["college_medicine"] == "health"


@needs_data
def test_task_mapping_covers_dolly_and_the_other_sources(assembled):
    examples, _ = assembled
    raw = json.loads((ROOT / "train/dolly15k/public_training.json").read_text())
    assert {r["category"] for r in raw} <= set(data.DOLLY_TASKS)
    by_source = {}
    for e in examples:
        by_source.setdefault(e.source, Counter())[labels.TASKS[e.task] if e.task >= 0 else None] += 1
    assert set(by_source["gsm8k"]) == {"math"} and set(by_source["math_competition"]) == {"math"}
    assert set(by_source["humaneval"]) == {"coding"} and set(by_source["mbpp"]) == {"coding"}
    assert set(by_source["clinc_small_talk"]) == {"chitchat"}
    assert set(by_source["dolly"]) == set(labels.TASKS) - {"math", "coding", "chitchat"}


@needs_data
def test_dedupe_drops_the_known_mmlu_overlap_with_vllm_sr_cases(assembled):
    examples, info = assembled
    case_list = [data.normalize(c["question"]) for c in
                 json.loads((ROOT / "eval/vllm_sr/domain_classify_cases.json").read_text())]
    cases = set(case_list)
    train_half = {data.normalize(r["question"]) for r in data.Files(ROOT).csv("train/mmlu/test_train_half.csv")}
    assert sum(c in train_half for c in case_list) == 53  # the overlap the data README names (52 distinct)
    assert info["dropped_eval_overlap"]["mmlu_test_train_half"] >= 53
    left = {data.normalize(t) for e in examples for t in (e.text, e.group)}
    assert not (cases & left)


@needs_data
def test_no_training_text_equals_any_eval_text(assembled):
    examples, info = assembled
    banned = data.eval_texts(ROOT)
    assert not [e.text for e in examples if data.normalize(e.text) in banned]
    assert info["dropped_total"] == sum(info["dropped_eval_overlap"].values()) > 0


@needs_data
def test_every_example_has_a_valid_label_and_splits_are_stable(assembled):
    examples, info = assembled
    for e in examples:
        assert -1 <= e.domain < len(labels.DOMAINS) and -1 <= e.task < len(labels.TASKS)
        assert e.jailbreak in (-1, 0, 1) and (e.harmful == -1 or 0 <= e.harmful <= 1)
        assert e.strong == -1 or 0 <= e.strong <= 1
        for s, t, kind in e.pii or []:
            assert 0 <= s < t <= len(e.text) and kind in labels.PII_TYPES
    splits = Counter(e.split for e in examples)
    assert 0.07 < splits["dev"] / len(examples) < 0.13
    assert splits["test"] > 500 and {e.source for e in examples if e.split == "test"} == {"dolly"}
    again, _ = training_set.assemble(ROOT, synth_pii=300, seed=0, verbose=False)
    assert [(e.text, e.split) for e in again] == [(e.text, e.split) for e in examples]
    # questions of one group never straddle splits (MMLU question vs its RouteLLM prompt)
    split_of = {}
    for e in examples:
        assert split_of.setdefault(data.normalize(e.group), e.split) == e.split or e.source == "dolly"
    assert set(info["sha256"]) >= {"train/mmlu/test_train_half.csv", "train/presidio_pii/templates.txt"}


@needs_data
def test_strong_label_is_weak_fails_and_strong_succeeds(assembled):
    examples, _ = assembled
    rows = data.Files(ROOT).csv("train/routellm/mmlu_train_half.csv")
    want = {r["prompt"]: int(r["mixtral_8x7b_correct"] == "False" and r["gpt4_1106_correct"] == "True") for r in rows}
    got = [(e.text, e.strong) for e in examples if e.source == "routellm_mmlu"]
    assert got and all(want[t] == s for t, s in got)


@needs_data
def test_synthesised_pii_spans_match_their_text_and_cover_new_types(assembled):
    examples, _ = assembled
    synth = [e for e in examples if e.source == "presidio_templates_faker"]
    assert len(synth) > 250
    kinds = Counter(k for e in synth for _, _, k in e.pii)
    assert {"AGE", "NRP", "ZIP_CODE", "EMAIL_ADDRESS"} <= set(kinds)
    for e in synth:
        for s, t, _ in e.pii:
            assert e.text[s:t].strip() == e.text[s:t] != ""


def test_bio_tags_align_with_word_pieces():
    tok = features.load_tokenizer()
    text = "Mail Jane Doe at jane.doe@example.com today"
    spans = [(5, 13, "PERSON"), (17, 37, "EMAIL_ADDRESS")]
    ids, tags = features.encode(tok, [text], [spans])
    enc = tok.encode(text)
    names = [labels.PII_TAGS[t] if t >= 0 else None for t in tags[0]]
    assert names[0] is None and names[-1] is None  # [CLS], [SEP]
    assert enc.tokens[1:4] == ["mail", "jane", "doe"] and names[1:4] == ["O", "B-PERSON", "I-PERSON"]
    email = [n for (s, e), n in zip(enc.offsets, names) if 17 <= s < 37]
    assert email[0] == "B-EMAIL_ADDRESS" and set(email[1:]) == {"I-EMAIL_ADDRESS"}


def test_head_tail_keeps_both_ends_and_special_tokens():
    ids = [101] + list(range(1000, 1300)) + [102]
    cut, tail_at = features.head_tail(ids, 128)
    assert len(cut) == 128 and cut[0] == 101 and cut[-1] == 102
    assert cut[1] == 1000 and cut[-2] == 1299 and tail_at == 64


@needs_data
def test_safety_labels_keep_the_two_signals_apart(assembled):
    """Plain harmful requests teach `harmful` only, templates and injections `jailbreak` only;
    look-alikes and every other benign source are negatives of both."""
    examples, _ = assembled
    by = {}
    for e in examples:
        by.setdefault(e.source, []).append(e)
    for src in ("advbench", "harmbench", "strongreject", "verazuo_forbidden", "multijail_zh"):
        assert by[src] and all(e.harmful == 1.0 and e.jailbreak == -1 for e in by[src]), src
    # CoCoNot's unsafe requests are plainly asked: harmful, and explicitly not an attack on the model
    assert by["coconot_unsafe"] and all(e.harmful == 1.0 and e.jailbreak == 0 for e in by["coconot_unsafe"])
    assert all(0.5 < e.harmful < 1 for e in by["hh_redteam"])          # weak label: a soft target
    for src in ("verazuo_jailbreak", "bipia_injected"):
        assert all(e.jailbreak == 1 and e.harmful == -1 for e in by[src]), src
    for src in ("coconot_benign", "bipia_clean", "dolly", "t0", "xquad_es", "belle_zh", "legalbench"):
        assert all(e.jailbreak == 0 and e.harmful == 0.0 for e in by[src]), src
    # MultiJail only in languages that also have benign prompts here
    assert {e.lang for e in examples if e.source.startswith("multijail")} == {"en", "zh", "ar", "th", "vi"}
    assert {"zh", "ar", "th", "vi"} <= {e.lang for e in examples if e.harmful == 0.0}


@needs_data
def test_translations_share_a_split_and_difficulty_is_a_share_of_models(assembled):
    examples, _ = assembled
    split_of = {}
    for e in examples:
        if e.source.startswith("xquad"):
            assert split_of.setdefault(e.group, e.split) == e.split
    assert len({e.lang for e in examples if e.source.startswith("xquad")}) == 12
    pro = [e for e in examples if e.source == "mmlu_pro"]
    assert len(pro) > 5000 and all(0 <= e.strong <= 1 for e in pro if e.strong >= 0)
    assert 0.2 < sum(e.strong for e in pro) / len(pro) < 0.8          # a spread, not a constant
    assert all(e.strong == 0.0 for e in examples if e.source == "clinc_small_talk")


@needs_data
def test_pii_negatives_are_sources_without_personal_data(assembled):
    examples, _ = assembled
    for src in ("mmlu_pro", "gsm8k", "mbpp", "clinc_small_talk"):
        rows = [e for e in examples if e.source == src]
        assert rows and all(e.pii == [] for e in rows), src
    wnut = [e for e in examples if e.source == "wnut17"]
    assert sum(not e.pii for e in wnut) > 2500 and {k for e in wnut for _, _, k in e.pii} <= {"PERSON", "LOCATION", "ORGANIZATION"}
