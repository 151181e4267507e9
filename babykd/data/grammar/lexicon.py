"""The demo grammar's words: short lemma lists expanded by morphology into labelled entries.

Every entry is filed under a *preterminal label* whose dotted parts carry the
grammatical features the rules need (``N.ani.pl``, ``V.tr_thg.pres.3s``,
``DET.sg``). The number/agreement part of a label (``sg``/``pl``/``3s``) is
what the minimal-pair builder flips: a word and its counterpart share a
*lemma* (``chases``/``chase``, ``this``/``these``, ``himself``/``themselves``).

Lists are ordered from common to rare: :func:`zipf_weights` turns the order
into Zipf-Mandelbrot sampling weights, so the corpus has the long-tailed word
frequencies of real text (a BPE trained on it behaves sensibly).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from . import morphology as mo


@dataclass(frozen=True)
class Entry:
    """One word under one preterminal label."""

    word: str
    lemma: str
    weight: float


Lexicon = dict[str, list[Entry]]

# --- nouns (lemma lists; plurals come from morphology) -----------------------
HUMAN_M = "boy man daddy dad brother grandpa king prince uncle son fireman policeman fisherman".split()
HUMAN_F = "girl woman mommy mom sister grandma queen princess aunt daughter lady witch".split()
HUMAN_C = ("baby kid child friend doctor neighbor cousin giant fairy pirate clown nurse "
           "person student twin wizard knight stranger").split()
#: Occupations are built from verbs (bake -> baker) instead of being listed.
AGENT_VERBS = ("teach bake farm paint build sing dance swim run drive garden climb play help "
               "read write hunt clean explore skate ride jog").split()
ANIMALS = ("dog cat bird bunny bear duck cow horse pig mouse frog monkey lion tiger elephant "
           "puppy kitty kitten doggy chicken owl fox goat turtle snake giraffe zebra dinosaur "
           "butterfly bee ant spider squirrel rabbit wolf goose calf whale shark dolphin penguin "
           "seal crab worm bug hen lamb pony donkey camel kangaroo koala panda hippo rhino "
           "crocodile parrot ladybug caterpillar snail beaver raccoon hedgehog otter octopus "
           "unicorn dragon mole bat badger rooster swan eagle robin crow gorilla chipmunk skunk "
           "toad lizard cub piglet duckling ox puffin walrus llama").split()
THINGS = ("ball book car truck block box hat shoe sock cup spoon bowl plate chair table bed "
          "door window toy doll blanket pillow crayon pencil paper picture puzzle train boat "
          "plane bike wagon kite drum balloon bubble bucket shovel basket bag coat jacket mitten "
          "boot button key clock phone lamp bottle towel tent rock stick leaf flower shell "
          "feather stone brick rope ribbon ring necklace crown wand map letter present card "
          "ticket umbrella scarf knife candle bell whistle flag robot rocket hole snowman "
          "sandcastle raincoat toothbrush hairbrush football teapot bathtub doorbell sailboat "
          "wheelbarrow jigsaw marble spinner trumpet guitar piano violin tricycle helmet "
          "backpack lunchbox sticker bracelet glove sweater pajama sandal slipper mirror").split()
FOODS = ("apple cookie banana cracker sandwich carrot cake cupcake muffin orange grape "
         "strawberry berry pear peach egg potato tomato pancake waffle noodle pickle cherry "
         "lemon pie pizza pretzel bagel donut biscuit lollipop bean pea nut raisin plum melon "
         "cucumber onion mango peanut popsicle sausage meatball loaf cone treat snack "
         "blueberry raspberry pumpkin coconut sundae").split()
PLACES = ("park house garden forest kitchen farm beach river hill school store shop zoo "
          "castle lake pond field yard street bedroom bathroom playground library cave island "
          "mountain village town city barn meadow nest pool tower bridge cottage").split()

# --- names: composed from pieces, so there are hundreds without a name list --
NAME_ONSETS = "B D F G J K L M N P R S T V W Z Br Cl Fl Gr St Tr Sh".split()
NAME_ENDINGS_M = "en ob im ax ody ick ug on az eo ed io".split()
NAME_ENDINGS_F = "ella ina ia ily osie uby anna ora ix ette ola".split()
FAMILY_NAMES_M = ["Daddy", "Grandpa"]
FAMILY_NAMES_F = ["Mommy", "Grandma"]
TOWN_STEMS = ("Oak Maple Pine Apple Honey Sunny Green Silver Rose Willow Stone River Meadow "
              "Berry Fox Bear Clover Pebble").split()
TOWN_ENDINGS = "ville ton wood field brook dale hill burg".split()

# --- verbs by subcategorisation frame ----------------------------------------
VERBS = {
    # animate subject, no object
    "intr": ("play run jump sleep go come sing laugh cry dance swim walk hide smile sit climb "
             "hop skip fly crawl wait rest giggle shout whisper nap snore sneeze cough listen "
             "yawn splash wiggle march skate stand paddle tiptoe stomp twirl").split(),
    # animal noises (animate subject)
    "sound": "bark meow moo quack roar growl buzz chirp squeak hiss howl purr oink neigh cluck hoot".split(),
    # any subject, no object (things move too)
    "move": "fall roll bounce spin float sink wobble tumble sparkle melt pop".split(),
    # any concrete object
    "tr_any": ("see like love want find need have watch hold get take bring carry miss "
               "remember draw touch smell count pick catch keep grab").split(),
    "tr_food": "eat cook bake share taste buy cut peel mix chew lick".split(),
    "tr_ani": ("hug kiss tickle chase help call visit meet thank feed pat pet scare tease wake "
               "dress bite hear teach ask follow greet cuddle lift").split(),
    "tr_thg": ("throw kick drop push pull open close fix paint build break wash lose make "
               "bounce fold wrap clean color fill empty stack sell shake sweep hang pack blow "
               "ring dig").split(),
    # verbs that take a reflexive object in the reflexive clause rules
    "tr_refl": "hurt scratch wash dry dress tickle pinch bump hug see".split(),
    "ditr": "give show bring hand send read sell lend pass offer toss".split(),
    "clausal": "think know say hope".split(),
    "ctl": "want like love try need start forget learn begin".split(),
}

# --- adjectives by the noun class they describe ------------------------------
ADJ_ANY = ("big little small red blue green yellow pink purple brown black white new old nice "
           "pretty good funny silly tiny huge soft wet dirty clean warm cold hot long tall short "
           "shiny fluffy heavy loud quiet fast slow strong dark bright lovely quick").split()
ADJ_ANIMATE = ("happy sad hungry sleepy tired angry scared brave kind busy grumpy shy clever "
               "proud friendly gentle curious lonely excited thirsty naughty careful young "
               "cheerful sweet").split()
ADJ_THING = "broken empty full sharp striped sparkly wooden smooth bumpy round sticky".split()
ADJ_FOOD = "yummy sweet sour crunchy juicy fresh ripe tasty spicy salty delicious crispy".split()
#: Adjectives with -er/-est forms (used in "bigger than ...").
COMPARABLE = set(("big small tall short fast slow old young happy hungry soft loud quiet warm "
                  "cold hot nice funny silly tiny heavy dark bright long strong brave kind sweet "
                  "clean dirty quick").split())
MANNER = "slow quick quiet loud happy gentle careful sad soft brave sleepy proud".split()
ADVERBS = "again too now today fast outside inside together away tomorrow".split()

# --- closed classes -----------------------------------------------------------
DETERMINERS_SG = "the a my this that your his her our their one every".split()
DETERMINERS_PL = "the some my these two your those many his her our their three several four five ten".split()
#: A number-marked determiner and its counterpart share a lemma (these -> this).
PLURAL_DETERMINER_LEMMA = {"these": "this", "those": "that", "several": "a", "many": "every", "two": "one"}
PREPOSITIONS = "in on under behind near by into onto over".split()
MODALS = "can will could should might".split()
SUBJECT_PRONOUNS = {"1s": ["I"], "3s.m": ["he"], "3s.f": ["she"], "pl": ["you", "we", "they"]}
OBJECT_PRONOUNS = {"hum": "me you him her us them".split(), "ani": "it him her them".split(),
                   "thg": ["it", "them"], "food": ["it", "them"]}
# Auxiliaries: label -> (word, lemma) with the agreement feature last in the label.
AUXILIARIES = {
    "BE.pres.1s": ("am", "be"), "BE.pres.3s": ("is", "be"), "BE.pres.pl": ("are", "be"),
    "BE.past.1s": ("was", "be"), "BE.past.3s": ("was", "be"), "BE.past.pl": ("were", "be"),
    "BENEG.pres.3s": ("isn't", "ben"), "BENEG.pres.pl": ("aren't", "ben"),
    "BENEG.past.3s": ("wasn't", "ben"), "BENEG.past.pl": ("weren't", "ben"),
    "DO.pres.1s": ("do", "do"), "DO.pres.3s": ("does", "do"), "DO.pres.pl": ("do", "do"),
    "DONT.pres.1s": ("don't", "dont"), "DONT.pres.3s": ("doesn't", "dont"),
    "DONT.pres.pl": ("don't", "dont"),
}


def zipf_weights(n: int, exponent: float = 1.0, offset: float = 2.7) -> list[float]:
    """Zipf-Mandelbrot weights 1/(rank+offset)^exponent for a list of n items in frequency order."""
    return [1.0 / (rank + offset) ** exponent for rank in range(1, n + 1)]


def _entries(words: list[str], lemmas: list[str] | None = None, exponent: float = 1.0) -> list[Entry]:
    lemmas = lemmas or words
    return [Entry(w, l, p) for w, l, p in zip(words, lemmas, zipf_weights(len(words), exponent))]


def names(taken: set[str]) -> tuple[list[str], list[str]]:
    """(male, female) given names: family words plus onset+ending compositions (Bob, Lily, Trix).

    Compositions that spell a word in `taken` (Bed, Fix) are left out.
    """
    def compose(endings: list[str]) -> list[str]:
        return [o + e for e, o in product(endings, NAME_ONSETS) if (o + e).lower() not in taken]

    return FAMILY_NAMES_M + compose(NAME_ENDINGS_M), FAMILY_NAMES_F + compose(NAME_ENDINGS_F)


def towns() -> list[str]:
    """Place names for stories (Oakville, Honeybrook)."""
    return [s + e for e, s in product(TOWN_ENDINGS, TOWN_STEMS)]


def _add_nouns(lex: Lexicon, label: str, lemmas: list[str]) -> None:
    lex[f"N.{label}.sg"] = _entries(lemmas)
    lex[f"N.{label}.pl"] = _entries([mo.plural(n) for n in lemmas], lemmas)


def _noun_entries(lex: Lexicon) -> None:
    agents = [mo.agent_noun(v) for v in AGENT_VERBS]
    humans = {"m": HUMAN_M, "f": HUMAN_F, "c": HUMAN_C + agents}
    for gender, lemmas in humans.items():
        _add_nouns(lex, f"hum.{gender}", lemmas)
    # Plural humans do not need gender (all take "themselves"): one merged label.
    lex["N.hum.pl"] = [e for g in humans for e in lex.pop(f"N.hum.{g}.pl")]
    for gender in humans:
        lex[f"N.hum.sg.{gender}"] = lex.pop(f"N.hum.{gender}.sg")
    for label, lemmas in (("ani", ANIMALS), ("thg", THINGS), ("food", FOODS), ("plc", PLACES)):
        _add_nouns(lex, label, lemmas)


def _name_entries(lex: Lexicon) -> None:
    male, female = names({e.word.lower() for entries in lex.values() for e in entries})
    lex["NAME.m"] = _entries(male, exponent=0.7)
    lex["NAME.f"] = _entries(female, exponent=0.7)
    lex["POSS"] = _entries([n + "'s" for n in male + female], male + female, exponent=0.7)
    lex["TOWN"] = _entries(towns(), exponent=0.7)


def _verb_forms(lemma: str) -> dict[str, str]:
    third = mo.third_singular(lemma)
    return {"base": lemma, "ing": mo.present_participle(lemma), "past": mo.past(lemma),
            "pres.1s": lemma, "pres.3s": third, "pres.pl": lemma}


def _verb_entries(lex: Lexicon) -> None:
    for frame, lemmas in VERBS.items():
        forms = [_verb_forms(v) for v in lemmas]
        for form in forms[0]:
            lex[f"V.{frame}.{form}"] = _entries([f[form] for f in forms], lemmas)


def _adjective_entries(lex: Lexicon) -> None:
    by_class = {"hum": ADJ_ANY + ADJ_ANIMATE, "ani": ADJ_ANY + ADJ_ANIMATE,
                "thg": ADJ_ANY + ADJ_THING, "food": ADJ_ANY + ADJ_FOOD}
    for cls, adjectives in by_class.items():
        lex[f"ADJ.{cls}"] = _entries(adjectives)
        comparable = [a for a in adjectives if a in COMPARABLE]
        lex[f"CMP.{cls}"] = _entries([mo.comparative(a)[0] for a in comparable], comparable)
        lex[f"SUP.{cls}"] = _entries([mo.comparative(a)[1] for a in comparable], comparable)
    lex["ADV"] = _entries(ADVERBS + [mo.adverb(a) for a in MANNER])


def _closed_class_entries(lex: Lexicon) -> None:
    # Closed classes are steeper than Zipf's 1: "the" dwarfs "every".
    lex["DET.sg"] = _entries(DETERMINERS_SG, exponent=2)
    lex["DET.pl"] = _entries(DETERMINERS_PL,
                             [PLURAL_DETERMINER_LEMMA.get(d, d) for d in DETERMINERS_PL], exponent=2)
    lex["P"] = _entries(PREPOSITIONS, exponent=1.5)
    lex["MOD"] = _entries(MODALS, exponent=1.5)
    for feats, words in SUBJECT_PRONOUNS.items():
        lex[f"PRO.{feats}"] = _entries(words)
    for cls, words in OBJECT_PRONOUNS.items():
        lex[f"OPRO.{cls}"] = _entries(words)
    for label, (word, lemma) in AUXILIARIES.items():
        lex[label] = [Entry(word, lemma, 1.0)]
    # Reflexives: gender m/f/c(ommon: either)/n(euter); every plural is "themselves".
    singular_reflexives = {"m": ["himself"], "f": ["herself"], "c": ["himself", "herself"],
                           "n": ["itself"]}
    for gender, words in singular_reflexives.items():
        lex[f"REFL.sg.{gender}"] = [Entry(w, "self3", 1.0) for w in words]
        lex[f"REFL.pl.{gender}"] = [Entry("themselves", "self3", 1.0)]


def build_lexicon() -> Lexicon:
    """All preterminal labels of the demo grammar with their weighted entries."""
    lex: Lexicon = {}
    _noun_entries(lex)
    _verb_entries(lex)
    _adjective_entries(lex)
    _closed_class_entries(lex)
    _name_entries(lex)  # last: names must not spell any other word
    return lex
