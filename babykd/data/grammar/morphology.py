"""English inflection rules for the demo grammar's lexicon.

The lexicon lists lemmas only; every inflected form (plurals, 3sg, past,
-ing, comparatives, -ly adverbs, agent nouns) is derived here, so the word
list stays short while the corpus still has a few thousand word types with
the regular and irregular morphology a small LM should learn.
"""

from __future__ import annotations

VOWELS = "aeiou"

IRREGULAR_PLURALS = {
    "child": "children", "man": "men", "woman": "women", "person": "people",
    "mouse": "mice", "goose": "geese", "ox": "oxen", "wolf": "wolves",
    "calf": "calves", "leaf": "leaves", "loaf": "loaves", "knife": "knives",
    "shelf": "shelves", "scarf": "scarves", "potato": "potatoes",
    "tomato": "tomatoes", "fireman": "firemen", "snowman": "snowmen",
    "policeman": "policemen", "fisherman": "fishermen",
}

IRREGULAR_PAST = {
    "be": "was", "go": "went", "see": "saw", "eat": "ate", "run": "ran",
    "take": "took", "give": "gave", "find": "found", "have": "had",
    "make": "made", "come": "came", "get": "got", "sit": "sat", "sing": "sang",
    "swim": "swam", "draw": "drew", "throw": "threw", "catch": "caught",
    "bring": "brought", "buy": "bought", "hold": "held", "hide": "hid",
    "ride": "rode", "write": "wrote", "read": "read", "say": "said",
    "think": "thought", "know": "knew", "feel": "felt", "fly": "flew",
    "break": "broke", "build": "built", "drink": "drank", "fall": "fell",
    "sleep": "slept", "meet": "met", "keep": "kept", "lose": "lost",
    "tell": "told", "win": "won", "dig": "dug", "blow": "blew", "grow": "grew",
    "hear": "heard", "bite": "bit", "shake": "shook", "sweep": "swept",
    "spin": "spun", "swing": "swung", "feed": "fed", "put": "put", "cut": "cut",
    "hit": "hit", "forget": "forgot", "begin": "began", "sink": "sank",
    "steal": "stole", "teach": "taught", "wake": "woke", "leave": "left",
    "light": "lit", "stand": "stood", "understand": "understood",
    "sell": "sold", "send": "sent", "spend": "spent", "wear": "wore",
    "choose": "chose", "freeze": "froze", "shine": "shone", "slide": "slid",
    "stick": "stuck", "tear": "tore", "bend": "bent", "lend": "lent",
    "hang": "hung", "ring": "rang", "hurt": "hurt",
}

#: Stress-final two-syllable verbs double their consonant too (forget -> forgetting).
ING_STEMS = {"forget": "forgett", "begin": "beginn"}

IRREGULAR_3SG = {"have": "has", "be": "is", "do": "does"}

IRREGULAR_COMPARATIVE = {"good": ("better", "best"), "bad": ("worse", "worst")}

#: Vowel letters that sound like consonants (and the reverse) for a/an.
AN_EXCEPTIONS_A = ("uni", "use", "uku", "one", "eu")
AN_EXCEPTIONS_AN = ("hour", "honest", "honor")

#: Final consonants never doubled (hop -> hopped, but show -> showed).
NO_DOUBLE = set("wxyh")


def _is_cvc(word: str) -> bool:
    """True for one-syllable consonant-vowel-consonant words (hop, sit, run)."""
    if len(word) < 3 or word[-1] in VOWELS or word[-1] in NO_DOUBLE:
        return False
    if word[-2] not in VOWELS or word[-3] in VOWELS:
        return False
    return sum(1 for c in word[:-2] if c in VOWELS) == 0 or word.startswith("qu")


def _sibilant(word: str) -> bool:
    return word.endswith(("s", "sh", "ch", "x", "z"))


def _consonant_y(word: str) -> bool:
    return word.endswith("y") and len(word) > 1 and word[-2] not in VOWELS


def _s_form(word: str, irregular: dict[str, str], es_after_o: bool) -> str:
    """The -s suffix shared by plurals and 3sg verbs: +es after sibilants, y -> ies."""
    if word in irregular:
        return irregular[word]
    if _sibilant(word) or (es_after_o and word.endswith("o")):
        return word + "es"
    if _consonant_y(word):
        return word[:-1] + "ies"
    return word + "s"


def plural(noun: str) -> str:
    """Plural of a count noun: dog -> dogs, box -> boxes, puppy -> puppies, mouse -> mice."""
    return _s_form(noun, IRREGULAR_PLURALS, es_after_o=False)


def third_singular(verb: str) -> str:
    """Present 3rd person singular: run -> runs, wash -> washes, cry -> cries, go -> goes."""
    return _s_form(verb, IRREGULAR_3SG, es_after_o=True)


def _vowel_suffix(word: str, suffix: str) -> str:
    """Add -ed/-er/-est: bake -> baked, cry -> cried, hop -> hopped, big -> bigger."""
    if word.endswith("e"):
        return word + suffix[1:]
    if _consonant_y(word):
        return word[:-1] + "i" + suffix
    if _is_cvc(word):
        return word + word[-1] + suffix
    return word + suffix


def past(verb: str) -> str:
    """Simple past: jump -> jumped, hop -> hopped, cry -> cried, bake -> baked, go -> went."""
    return IRREGULAR_PAST.get(verb) or _vowel_suffix(verb, "ed")


def present_participle(verb: str) -> str:
    """-ing form: run -> running, make -> making, see -> seeing, lie -> lying."""
    if verb in ING_STEMS:
        return ING_STEMS[verb] + "ing"
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and verb != "be":
        return verb[:-1] + "ing"
    if _is_cvc(verb):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def agent_noun(verb: str) -> str:
    """Occupation noun from a verb: bake -> baker, swim -> swimmer, farm -> farmer."""
    return _vowel_suffix(verb, "er")


def comparative(adjective: str) -> tuple[str, str]:
    """(-er, -est) forms: big -> bigger/biggest, happy -> happier/happiest, nice -> nicer/nicest."""
    if adjective in IRREGULAR_COMPARATIVE:
        return IRREGULAR_COMPARATIVE[adjective]
    return _vowel_suffix(adjective, "er"), _vowel_suffix(adjective, "est")


def adverb(adjective: str) -> str:
    """Manner adverb: slow -> slowly, happy -> happily, gentle -> gently."""
    if _consonant_y(adjective):
        return adjective[:-1] + "ily"
    if adjective.endswith("le"):
        return adjective[:-1] + "y"
    return adjective + "ly"


def indefinite_article(next_word: str) -> str:
    """'a' or 'an' for the word that follows (an apple, a unicorn, an hour)."""
    lower = next_word.lower()
    if lower.startswith(AN_EXCEPTIONS_AN):
        return "an"
    if lower.startswith(AN_EXCEPTIONS_A):
        return "a"
    return "an" if lower[:1] in VOWELS else "a"
