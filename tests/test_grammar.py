"""The demo corpus grammar: morphology, the CFG engine, the corpus files and the minimal pairs."""

import json
import math
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from babykd.data.grammar import PAIR_TASKS, DemoCorpus, demo_grammar, generate_demo_corpus, is_sentence
from babykd.data.grammar import morphology as mo
from babykd.data.grammar.__main__ import main as grammar_cli
from babykd.data.grammar.cfg import GrammarBuilder, leaves
from babykd.data.grammar.lexicon import Entry
from babykd.data.grammar.render import prose, speech_line, tokens_from_prose

CORPUS_FILES = ("train_10M/childes.train", "train_10M/gutenberg.train",
                "dev/childes.dev", "dev/gutenberg.dev")
SMALL = dict(train_words=6_000, dev_words=1_500, pairs_per_task=30)
SPEAKER_TAG = re.compile(r"^\*?[A-Z]{1,4}:\s")


def corpus_files(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def clauses(text: str) -> set[tuple[str, ...]]:
    """Lower-cased word runs between punctuation: an independent re-reading of the corpus."""
    return {tuple(part.lower().split()) for part in re.split(r'[.,!?"\n]', text) if part.strip()}


def words_of(sentence: str) -> list[str]:
    return sentence.rstrip(".?!").lower().split()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[DemoCorpus, float]:
    """The default-size demo corpus (300k + 30k words, 300 pairs per task) and its wall time."""
    start = time.perf_counter()
    corpus = generate_demo_corpus(tmp_path_factory.mktemp("demo"))
    return corpus, time.perf_counter() - start


@pytest.fixture(scope="module")
def pairs(demo) -> dict[str, list[dict]]:
    corpus, _ = demo
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(corpus.pairs_dir.glob("*.jsonl"))}


# --- morphology ----------------------------------------------------------------
@pytest.mark.parametrize("fn, cases", [
    (mo.plural, {"dog": "dogs", "box": "boxes", "puppy": "puppies", "mouse": "mice",
                 "leaf": "leaves", "child": "children", "toy": "toys", "potato": "potatoes"}),
    (mo.third_singular, {"run": "runs", "wash": "washes", "cry": "cries", "go": "goes",
                         "have": "has", "play": "plays"}),
    (mo.past, {"jump": "jumped", "hop": "hopped", "cry": "cried", "bake": "baked", "go": "went",
               "visit": "visited", "play": "played", "fix": "fixed"}),
    (mo.present_participle, {"run": "running", "make": "making", "see": "seeing", "lie": "lying",
                             "forget": "forgetting", "open": "opening"}),
    (mo.indefinite_article, {"apple": "an", "dog": "a", "unicorn": "a", "hour": "an", "egg": "an"}),
    (mo.agent_noun, {"bake": "baker", "swim": "swimmer", "farm": "farmer"}),
])
def test_morphology(fn, cases):
    assert {word: fn(word) for word in cases} == cases


# --- the CFG engine ------------------------------------------------------------
def test_builder_rejects_undefined_symbols_and_empty_rules():
    builder = GrammarBuilder({"N": [Entry("dog", "dog", 1.0)]})
    builder.add("S", "the N Vp")
    with pytest.raises(ValueError, match="undefined symbol 'Vp'"):
        builder.build()
    with pytest.raises(ValueError, match="empty right-hand side"):
        builder.add("S", "")


def test_sampled_sentences_are_recognized_and_agreement_errors_are_not():
    grammar = demo_grammar()
    rng = random.Random(5)
    for symbol in ["UTT"] * 150 + ["SENT"] * 150:
        tokens = leaves(grammar.sample(symbol, rng))
        assert grammar.recognize(tokens, symbol), tokens
    for good, bad in [("the dog runs .", "the dog run ."), ("the dogs run .", "the dogs runs ."),
                      ("this dog runs .", "these dog runs ."),
                      ("does the dog run ?", "do the dog run ?"),
                      ("the boys hurt themselves .", "the boys hurt himself ."),
                      ("the dog that chases the cats runs .", "the dog that chases the cats run .")]:
        assert is_sentence(grammar, good.split()), good
        assert not is_sentence(grammar, bad.split()), bad


def test_rendering_styles_and_round_trip():
    tokens = ["<q", "look", "at", "a", "apple", "!", "q>", "shouted", "Ben", "."]
    assert prose(tokens) == '"Look at an apple!" shouted Ben.'
    assert speech_line(["a", "egg", "?"]) == "an egg ?"
    vocabulary = demo_grammar().vocabulary()
    assert tokens_from_prose("The dog ate an apple.", vocabulary) == ["the", "dog", "ate", "a", "apple", "."]
    assert tokens_from_prose("Ben ate a apple.", vocabulary)[2] == "*a"  # wrong article stays wrong


# --- the corpus ----------------------------------------------------------------
def test_default_corpus_layout_size_and_speed(demo):
    corpus, seconds = demo
    assert seconds < 20, f"generating the default demo corpus took {seconds:.1f}s"
    files = {name: (corpus.corpus_dir / name).read_text(encoding="utf-8") for name in CORPUS_FILES}
    for name, text in files.items():
        assert text.endswith("\n") and "\n\n\n" not in text, name
        assert len(text.split("\n\n")) > 3, f"{name}: expected several blank-line separated documents"
        assert not any(SPEAKER_TAG.match(line) for line in text.splitlines()), name
    train = sum(len(files[n].split()) for n in CORPUS_FILES[:2])
    dev = sum(len(files[n].split()) for n in CORPUS_FILES[2:])
    assert (corpus.train_words, corpus.dev_words) == (train, dev)
    assert 300_000 <= train < 303_000 and 30_000 <= dev < 33_000
    assert 0.2 < len(files[CORPUS_FILES[0]].split()) / train < 0.4  # speech share of the words


def test_corpus_style_matches_babylm_sources(demo):
    corpus, _ = demo
    speech = (corpus.corpus_dir / CORPUS_FILES[0]).read_text().split("\n\n")[0].splitlines()
    assert all(re.search(r" [.?!]$", line) for line in speech), "utterances end in spaced punctuation"
    story = (corpus.corpus_dir / CORPUS_FILES[1]).read_text().split("\n\n")[0].splitlines()
    assert story[0].startswith(("Once upon a time", "There was once"))
    assert all(line.lstrip('"')[0].isupper() and line[-1] in '.!?"' and " ." not in line for line in story)


def test_vocabulary_in_thousands_with_zipfian_frequencies(demo):
    corpus, _ = demo
    text = "".join((corpus.corpus_dir / n).read_text() for n in CORPUS_FILES[:2])
    counts = sorted(Counter(re.findall(r"[\w']+", text.lower())).values(), reverse=True)
    assert 2_000 <= len(counts) <= 10_000
    slope = math.log(counts[999] / counts[9]) / math.log(1000 / 10)  # log-log rank/frequency
    assert -1.6 < slope < -0.6, slope


def test_agreement_phenomena_are_present_and_consistent(demo):
    corpus, _ = demo
    text = (corpus.corpus_dir / CORPUS_FILES[0]).read_text() + (corpus.corpus_dir / CORPUS_FILES[1]).read_text()
    lower = text.lower()
    for pattern in (r"\bdoes \w+", r"\bdo \w+", r"\bis\b", r"\bare\b", r"\bwas\b", r"\bwere\b",
                    r"\bdoesn't\b", r"\bdon't\b", r"\bhimself\b", r"\bherself\b", r"\bthemselves\b",
                    r"\bthese\b", r"\bthose\b", r"\b(that|who) \w+s\b", r"\bthere (is|are)\b", r"\?"):
        assert len(re.findall(pattern, lower)) >= 50, pattern
    lexicon = demo_grammar().lexicon
    verbs = {e.word for label, es in lexicon.items() if label.startswith("V.") for e in es}
    nouns = {number: {e.word for label, es in lexicon.items()
                      if label.split(".")[0] == "N" and label.split(".")[2] == number for e in es} - verbs
             for number in ("sg", "pl")}
    pairs = Counter(re.findall(r"\b(this|these|those|several|many|every|a|an) (\w+)", lower))
    assert sum(n for (det, noun), n in pairs.items() if noun in nouns["pl"] and det in ("these", "those")) > 50
    wrong = {(det, noun) for det, noun in pairs if
             (det in ("these", "those", "several", "many") and noun in nouns["sg"])
             or (det in ("this", "every", "a", "an") and noun in nouns["pl"])}
    assert not wrong


def test_corpus_loader_reads_the_demo_corpus(demo):
    from babykd.data import open_corpus

    corpus, _ = demo
    opened = open_corpus(corpus.corpus_dir)
    for split, n_files in (("train", 2), ("dev", 2)):
        parts = opened.read(split)
        assert sorted(p.file.source for p in parts) == ["childes", "gutenberg"]
        assert all(len(p.documents) > 1 for p in parts) and len(parts) == n_files


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    first = generate_demo_corpus(tmp_path / "a", seed=7, **SMALL)
    again = generate_demo_corpus(tmp_path / "b", seed=7, **SMALL)
    other = generate_demo_corpus(tmp_path / "c", seed=8, **SMALL)
    assert corpus_files(first.corpus_dir) == corpus_files(again.corpus_dir)
    a, c = corpus_files(first.corpus_dir), corpus_files(other.corpus_dir)
    assert a.keys() == c.keys() and all(a[name] != c[name] for name in a)
    assert sorted(a) == sorted(list(CORPUS_FILES) + [f"eval/demo_pairs/{t.uid}.jsonl" for t in PAIR_TASKS])


def test_bad_arguments_fail_clearly(tmp_path, capsys):
    with pytest.raises(ValueError, match="train_words must be an integer >= 100"):
        generate_demo_corpus(tmp_path, train_words=0)
    with pytest.raises(SystemExit) as exit_info:
        grammar_cli([str(tmp_path), "--pairs-per-task", "0"])
    assert exit_info.value.code == 2 and "pairs_per_task" in capsys.readouterr().err


def test_cli_writes_the_same_files_as_the_function(tmp_path):
    args = ["--train-words", "3000", "--dev-words", "500", "--pairs-per-task", "10", "--seed", "3"]
    run = subprocess.run([sys.executable, "-m", "babykd.data.grammar", str(tmp_path / "cli"), *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "question_aux_agreement.jsonl: 10 pairs" in run.stdout
    demo = generate_demo_corpus(tmp_path / "fn", train_words=3000, dev_words=500, pairs_per_task=10, seed=3)
    assert corpus_files(tmp_path / "cli") == corpus_files(demo.corpus_dir)


# --- minimal pairs -------------------------------------------------------------
def _changed_word_ok(uid: str, good: str, bad: str) -> bool:
    """Whether (good word, bad word) is the kind of swap task `uid` is about."""
    if uid.startswith("sv_agreement"):
        auxiliaries = [{"is", "are"}, {"was", "were"}, {"isn't", "aren't"}, {"wasn't", "weren't"},
                       {"doesn't", "don't"}]
        return {good, bad} in auxiliaries or mo.third_singular(good) == bad or mo.third_singular(bad) == good
    if uid == "determiner_noun_agreement":
        return {good, bad} in ({"this", "these"}, {"that", "those"}, {"a", "several"}, {"an", "several"},
                               {"every", "many"}, {"one", "two"})
    if uid == "anaphor_number_agreement":
        return {good, bad} in ({"himself", "themselves"}, {"herself", "themselves"}, {"itself", "themselves"})
    if uid == "question_aux_agreement":
        return {good, bad} in ({"does", "do"}, {"is", "are"})
    raise AssertionError(f"unknown task {uid}")


def test_pair_files_have_blimp_fields_and_counts(pairs):
    assert sorted(pairs) == sorted(t.uid for t in PAIR_TASKS)
    for uid, items in pairs.items():
        assert len(items) == 300
        assert [p["pair_id"] for p in items] == list(range(300))
        for p in items:
            assert {"sentence_good", "sentence_bad", "UID", "pair_id", "field", "linguistics_term"} <= p.keys()
            assert p["UID"] == uid and p["field"] in ("morphology", "syntax")
        assert len({p["sentence_good"] for p in items}) == len(items), f"{uid}: repeated pairs"


def test_each_pair_differs_in_one_controlled_word(pairs):
    for uid, items in pairs.items():
        for p in items:
            good, bad = words_of(p["sentence_good"]), words_of(p["sentence_bad"])
            diff = [i for i, (g, b) in enumerate(zip(good, bad)) if g != b]
            assert len(good) == len(bad) and len(diff) == 1, p
            i = diff[0]
            assert _changed_word_ok(uid, good[i], bad[i]), p
            if uid == "question_aux_agreement":
                assert i == 0, p
            if uid == "sv_agreement_relative_clause":
                assert {"that", "who"} & set(good[:i]), p


def test_good_sentences_are_grammatical_and_bad_ones_are_not(pairs):
    grammar = demo_grammar()
    vocabulary = grammar.vocabulary()
    for items in pairs.values():
        for p in items:
            assert is_sentence(grammar, tokens_from_prose(p["sentence_good"], vocabulary)), p
            assert not is_sentence(grammar, tokens_from_prose(p["sentence_bad"], vocabulary)), p


def test_pairs_are_not_in_the_training_text(demo, pairs):
    corpus, _ = demo
    seen = set()
    for name in CORPUS_FILES:
        seen |= clauses((corpus.corpus_dir / name).read_text())
    found = [p["sentence_good"] for items in pairs.values() for p in items
             if tuple(words_of(p["sentence_good"])) in seen or tuple(words_of(p["sentence_bad"])) in seen]
    assert not found
