"""A weighted context-free grammar: build it from readable rules, sample from it, recognise with it.

The demo grammar's agreement features are spelled into the symbol names
(``VP.hum.3s.now``), so a plain CFG is enough. The same object generates the
corpus *and* decides membership (an Earley recognizer), which is how the
minimal pairs are proven: the good sentence is sampled from the grammar, the
bad one must be rejected by it.

Symbol kinds, told apart by spelling: a symbol starting with an upper-case
letter is a nonterminal (it has rules) or a preterminal (a lexicon label);
anything else is a literal word. Names and "I" therefore live in the lexicon.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

from .lexicon import Entry, Lexicon

#: A derivation: (symbol, children); a literal word is a bare string.
Tree = tuple[str, tuple[Union["Tree", str], ...]]

#: Label parts that mark number/agreement, and what each flips to.
NUMBER_FLIPS = {"sg": ("pl",), "3s": ("pl",), "pl": ("sg", "3s")}


@dataclass(frozen=True)
class Choice:
    """Weighted alternatives ready for sampling: item i has probability weight_i / total."""

    items: tuple
    cumulative: tuple[float, ...]  # running sums; the last is inf so rounding never overflows
    total: float

    @classmethod
    def of(cls, items: Sequence, weights: Sequence[float]) -> "Choice":
        running, cumulative = 0.0, []
        for item, w in zip(items, weights):
            if not w > 0:
                raise ValueError(f"weight of {item!r} must be positive, got {w}")
            running += w
            cumulative.append(running)
        if not cumulative:
            raise ValueError("a choice needs at least one item")
        cumulative[-1] = math.inf
        return cls(tuple(items), tuple(cumulative), running)

    def pick(self, rng: random.Random):
        return self.items[bisect(self.cumulative, rng.random() * self.total)]


def word_choice(entries: Sequence[Entry]) -> Choice:
    """Sampling table for one lexicon label."""
    return Choice.of([e.word for e in entries], [e.weight for e in entries])


class GrammarBuilder:
    """Collects rules (``lhs -> rhs`` with a weight) and checks them when built."""

    def __init__(self, lexicon: Lexicon):
        self.lexicon = lexicon
        self.rules: dict[str, list[tuple[tuple[str, ...], float]]] = defaultdict(list)

    def add(self, lhs: str, rhs: str | Sequence[str], weight: float = 1.0) -> None:
        """Add ``lhs -> rhs``; rhs is a space-separated string or a list of symbols (never empty)."""
        symbols = tuple(rhs.split()) if isinstance(rhs, str) else tuple(rhs)
        if not symbols:
            raise ValueError(f"empty right-hand side for {lhs!r}: the grammar has no epsilon rules")
        if lhs in self.lexicon:
            raise ValueError(f"{lhs!r} is a lexicon label and cannot have rules")
        self.rules[lhs].append((symbols, float(weight)))

    def build(self) -> "Grammar":
        """Check every upper-case symbol is defined, then compile."""
        for lhs, alternatives in self.rules.items():
            for rhs, _ in alternatives:
                for sym in rhs:
                    if sym[:1].isupper() and sym not in self.rules and sym not in self.lexicon:
                        raise ValueError(f"rule {lhs} -> {' '.join(rhs)}: undefined symbol {sym!r}")
        return Grammar(dict(self.rules), self.lexicon)


class Grammar:
    """Compiled weighted CFG over a lexicon: sampling, recognition, number flips."""

    def __init__(self, rules: dict[str, list[tuple[tuple[str, ...], float]]], lexicon: Lexicon):
        self.rules = {lhs: Choice.of([r for r, _ in alts], [w for _, w in alts])
                      for lhs, alts in rules.items()}
        self.lexicon = lexicon
        self.words = {label: word_choice(entries) for label, entries in lexicon.items()}
        self._lemma = {label: {e.word: e.lemma for e in entries} for label, entries in lexicon.items()}
        self._labels_of: dict[str, set[str]] = defaultdict(set)
        for label, entries in lexicon.items():
            for e in entries:
                self._labels_of[e.word].add(label)
        self._compile_recognizer()

    # --- sampling -----------------------------------------------------------
    def sample(self, symbol: str, rng: random.Random,
               words: dict[str, Choice] | None = None) -> Tree:
        """A random derivation of `symbol`; `words` overrides some labels' word tables (a story's cast)."""
        rules = self.rules
        tables = self.words if words is None else {**self.words, **words}

        def expand(sym: str):
            choice = rules.get(sym)
            if choice is not None:
                return sym, tuple([expand(s) for s in choice.pick(rng)])
            table = tables.get(sym)
            if table is not None:
                return sym, (table.pick(rng),)
            return sym

        return expand(symbol)

    def vocabulary(self) -> set[str]:
        """Every word the grammar can produce: lexicon words and literals in rules."""
        literals = {s for choice in self.rules.values() for rhs in choice.items for s in rhs
                    if not s[:1].isupper()}
        return literals | set(self._labels_of)

    # --- number flips for minimal pairs -----------------------------------
    def counterparts(self, label: str, word: str) -> list[str]:
        """Words of the other number sharing `word`'s lemma (chases -> [chase], these -> [this]).

        The agreement part of the label (sg/pl/3s) is swapped; an empty list
        means the word has no number counterpart (``the``, ``my``, past tenses).
        """
        lemma = self._lemma[label][word]
        parts = label.split(".")
        found: list[str] = []
        for i, part in enumerate(parts):
            for other in NUMBER_FLIPS.get(part, ()):
                target = ".".join(parts[:i] + [other] + parts[i + 1:])
                found += [w for w, l in self._lemma.get(target, {}).items() if l == lemma and w != word]
        return sorted(set(found))

    def preterminals(self, tree: Tree) -> Iterator[tuple[int, str, str]]:
        """(leaf index, label, word) for every lexicon word of a derivation, left to right."""
        index = 0
        stack: list = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                index += 1
            elif node[0] in self.lexicon:
                yield index, node[0], node[1][0]
                index += 1
            else:
                stack.extend(reversed(node[1]))

    # --- recognition (Earley, with one-token lookahead on predictions) ----
    def _compile_recognizer(self) -> None:
        self._rule_lhs: list[str] = []
        self._rule_rhs: list[tuple[str, ...]] = []
        self._rules_of: dict[str, list[int]] = defaultdict(list)
        for lhs, choice in self.rules.items():
            for rhs in choice.items:
                self._rules_of[lhs].append(len(self._rule_lhs))
                self._rule_lhs.append(lhs)
                self._rule_rhs.append(rhs)
        first: dict[str, set[str]] = {lhs: set() for lhs in self.rules}
        changed = True
        while changed:  # fixed point: FIRST(X) = terminal-like symbols that can start X
            changed = False
            for lhs, rhs in zip(self._rule_lhs, self._rule_rhs):
                add = first[rhs[0]] if rhs[0] in first else {rhs[0]}
                if not add <= first[lhs]:
                    first[lhs] |= add
                    changed = True
        self._rule_first = [frozenset(first[rhs[0]]) if rhs[0] in first else frozenset([rhs[0]])
                            for rhs in self._rule_rhs]

    def _terminal_symbols(self, token: str) -> frozenset[str]:
        """The symbols a token can realise: itself as a literal and every label listing it."""
        return frozenset(self._labels_of.get(token, ())) | {token}

    def recognize(self, tokens: Sequence[str], start: str) -> bool:
        """True if `start` derives exactly `tokens` (grammar tokens: 'a' not 'an', punctuation split)."""
        if start not in self.rules:
            raise KeyError(f"unknown start symbol {start!r}")
        n = len(tokens)
        if n == 0:
            return False
        matches = [self._terminal_symbols(t) for t in tokens]
        seen: list[set] = [set() for _ in range(n + 1)]
        agenda: list[list] = [[] for _ in range(n + 1)]
        waiting: list[dict[str, list]] = [defaultdict(list) for _ in range(n + 1)]
        predicted: list[set] = [set() for _ in range(n + 1)]

        def push(i: int, item: tuple[int, int, int]) -> None:
            if item not in seen[i]:
                seen[i].add(item)
                agenda[i].append(item)

        def predict(i: int, symbol: str) -> None:
            predicted[i].add(symbol)
            for r in self._rules_of[symbol]:
                if not self._rule_first[r].isdisjoint(matches[i]):
                    push(i, (r, 0, i))

        predict(0, start)
        for i in range(n + 1):
            while agenda[i]:
                r, dot, origin = agenda[i].pop()
                rhs = self._rule_rhs[r]
                if dot == len(rhs):  # complete: advance whatever waited for this lhs at origin
                    for r2, d2, o2 in waiting[origin].get(self._rule_lhs[r], ()):
                        push(i, (r2, d2 + 1, o2))
                    continue
                sym = rhs[dot]
                if sym in self._rules_of:
                    waiting[i][sym].append((r, dot, origin))
                    if i < n and sym not in predicted[i]:
                        predict(i, sym)
                elif i < n and sym in matches[i]:
                    push(i + 1, (r, dot + 1, origin))
        return any(origin == 0 and dot == len(self._rule_rhs[r]) and self._rule_lhs[r] == start
                   for r, dot, origin in seen[n])


def leaves(tree: Tree | str) -> list[str]:
    """The words of a derivation, left to right."""
    out: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        else:
            stack.extend(reversed(node[1]))
    return out
