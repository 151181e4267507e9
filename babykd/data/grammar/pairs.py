"""BLiMP-style minimal pairs drawn from the demo grammar.

Each pair is made the same way: sample a sentence from the grammar (so the
good sentence is grammatical by construction), pick one agreement-bearing
word the task is about, and swap it for the same lemma's other number
(``runs -> run``, ``this -> these``, ``himself -> themselves``, ``does -> do``).
A pair is kept only if the grammar's recognizer *rejects* the bad sentence
(a swap that happens to stay grammatical, like ``says those dogs -> says that
dogs``, is dropped), neither sentence occurs as a sentence/clause of the
corpus, and it is not a repeat. Files use the BLiMP JSONL fields.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ...run.atomic import atomic_directory
from .cfg import Grammar, Tree, leaves
from .render import prose

#: A flip site: (leaf index, preterminal label, word).
Site = tuple[int, str, str]
#: The corpus-level sentence symbols: a bad sentence must not be derivable from any.
SENTENCE_STARTS = ("UTT", "SENT")
ATTEMPTS_PER_PAIR = 400


@dataclass(frozen=True)
class PairTask:
    """One subtask: where good sentences come from and which word gets flipped."""

    uid: str
    field: str
    linguistics_term: str
    starts: tuple[str, ...]
    end: str
    sites: Callable[[Grammar, Tree], list[Site]]


def _number(label: str) -> str:
    """Number of a noun label: N.ani.pl -> pl, N.hum.sg.m / NAME.f -> sg."""
    return "pl" if "pl" in label.split(".") else "sg"


def _offset(tree: Tree, child: int) -> int:
    return sum(len(leaves(c)) for c in tree[1][:child])


def _first_word(grammar: Grammar, tree: Tree, child: int) -> Site | None:
    """The word starting `tree`'s child `child` (absolute leaf index), if it is a lexicon word."""
    node = tree[1][child]
    if isinstance(node, str):
        return None
    index, label, word = next(grammar.preterminals(node))
    return (index + _offset(tree, child), label, word) if index == 0 else None


def _nouns(grammar: Grammar, node: Tree) -> list[str]:
    return [label for _, label, _ in grammar.preterminals(node) if label.startswith(("N.", "NAME."))]


def _has_node(node: Tree | str, prefix: str) -> bool:
    return not isinstance(node, str) and (node[0].startswith(prefix)
                                          or any(_has_node(c, prefix) for c in node[1]))


def _np_subject(subject: Tree | str) -> Tree | None:
    """`subject` if it is a noun phrase or name (not a pronoun or demonstrative), else None."""
    if isinstance(subject, str):
        return None
    head = subject[1][0] if subject[0].startswith("SUBJ.") else subject
    return subject if not isinstance(head, str) and head[0].startswith("NP.") else None


def _sites(*sites: Site | None) -> list[Site]:
    return [s for s in sites if s is not None]


def simple_agreement_sites(grammar: Grammar, tree: Tree) -> list[Site]:
    """Main verb/auxiliary of a clause whose subject is one short noun phrase (no RC, no PP)."""
    subject = _np_subject(tree[1][0])
    if subject is None or len(_nouns(grammar, subject)) != 1 or len(leaves(subject)) > 3:
        return []
    return _sites(_first_word(grammar, tree, 1))


def attractor_agreement_sites(grammar: Grammar, tree: Tree) -> list[Site]:
    """Main verb/auxiliary after a subject relative clause whose last noun has the other number."""
    subject = _np_subject(tree[1][0])
    if subject is None or not _has_node(subject, "RC."):
        return []
    nouns = _nouns(grammar, subject)
    if _number(nouns[0]) == _number(nouns[-1]):
        return []
    return _sites(_first_word(grammar, tree, 1))


def determiner_sites(grammar: Grammar, tree: Tree) -> list[Site]:
    """Every determiner; those without a number counterpart (the, my) are dropped later."""
    return [site for site in grammar.preterminals(tree) if site[1].startswith("DET.")]


def reflexive_sites(grammar: Grammar, tree: Tree) -> list[Site]:
    """The reflexive object of a reflexive clause with a noun-phrase subject."""
    if _np_subject(tree[1][0]) is None:
        return []
    return [site for site in grammar.preterminals(tree) if site[1].startswith("REFL.")]


def question_auxiliary_sites(grammar: Grammar, tree: Tree) -> list[Site]:
    """The fronted does/do or is/are of a yes/no question with a noun-phrase subject."""
    site = _first_word(grammar, tree, 0)
    if site is None or not site[1].startswith(("DO.pres.", "BE.pres.")) or _np_subject(tree[1][1]) is None:
        return []
    return [site]


PAIR_TASKS = (
    PairTask("sv_agreement_simple", "morphology", "subject_verb_agreement",
             ("CL.now", "CL.past"), ".", simple_agreement_sites),
    PairTask("sv_agreement_relative_clause", "morphology", "subject_verb_agreement",
             ("CL.now", "CL.past"), ".", attractor_agreement_sites),
    PairTask("determiner_noun_agreement", "morphology", "determiner_noun_agreement",
             ("CL.now", "CL.past"), ".", determiner_sites),
    PairTask("anaphor_number_agreement", "morphology", "anaphor_agreement",
             ("CLR.now", "CLR.past"), ".", reflexive_sites),
    PairTask("question_aux_agreement", "syntax", "subject_auxiliary_agreement",
             ("Q.yn",), "?", question_auxiliary_sites),
)


def is_sentence(grammar: Grammar, tokens: Sequence[str]) -> bool:
    """True if the grammar can produce `tokens` as a corpus utterance or story sentence."""
    return any(grammar.recognize(tokens, start) for start in SENTENCE_STARTS)


def make_pairs(grammar: Grammar, task: PairTask, n: int, rng: random.Random,
               seen: set) -> list[dict]:
    """`n` BLiMP-format pairs for `task`; `seen` holds the corpus's lower-cased clauses to avoid."""
    pairs: list[dict] = []
    made: set = set()
    for _ in range(ATTEMPTS_PER_PAIR * n):
        if len(pairs) == n:
            return pairs
        tree = grammar.sample(rng.choice(task.starts), rng)
        flips = [(site, alt) for site in task.sites(grammar, tree)
                 for alt in grammar.counterparts(site[1], site[2])]
        if not flips:
            continue
        (index, _, _), alternative = rng.choice(flips)
        good = leaves(tree)
        bad = good[:index] + [alternative] + good[index + 1:]
        keys = (tuple(w.lower() for w in good), tuple(w.lower() for w in bad))
        if any(k in seen or k in made for k in keys) or is_sentence(grammar, bad + [task.end]):
            continue
        made.update(keys)
        pairs.append({"sentence_good": prose(good + [task.end]),
                      "sentence_bad": prose(bad + [task.end]),
                      "field": task.field, "linguistics_term": task.linguistics_term,
                      "UID": task.uid, "pair_id": len(pairs)})
    raise RuntimeError(f"minimal pairs {task.uid}: only {len(pairs)} of {n} found in "
                       f"{ATTEMPTS_PER_PAIR * n} samples; ask for fewer pairs")


def write_pairs(pairs_dir: Path, grammar: Grammar, n: int, seed: int, seen: set) -> dict[str, int]:
    """One ``UID.jsonl`` per task in `pairs_dir` (replaced atomically); returns pairs per task."""
    counts = {}
    with atomic_directory(pairs_dir) as tmp:
        for task in PAIR_TASKS:
            rng = random.Random(f"babykd-demo/{seed}/pairs/{task.uid}")
            pairs = make_pairs(grammar, task, n, rng, seen)
            (tmp / f"{task.uid}.jsonl").write_text(
                "".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
            counts[task.uid] = len(pairs)
    return counts
