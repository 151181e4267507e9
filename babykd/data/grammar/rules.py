"""The rules of the demo grammar: simple child-directed English with agreement.

Features are spelled into symbol names and expanded by loops, so each rule
below is written once for all feature values:

* noun class ``cls``: hum(an), ani(mal), th(in)g, food, plc (place, only in PPs);
* agreement ``agr``: 3s (he, the dog), pl (they, you, the dogs), 1s (I);
* time ``T``: now (present, progressive, modal, don't) or past.

Selectional restrictions come from verb *frames* (``tr_food`` verbs take food
objects, ``sound`` verbs animal subjects). Relative clauses (subject and
object gaps), wh- and yes/no questions, reflexives, existentials, imperatives
and quoted dialogue give the phenomena the minimal pairs test.

Start symbols: ``UTT`` (one child-directed utterance), ``SENT`` (one story
sentence), ``OPENER``/``CLOSER`` (story frame), and the clause symbols the
pairs sample from (``CL.now``, ``CLR.past``, ``Q.yn``...).
"""

from __future__ import annotations

from functools import lru_cache

from .cfg import Grammar, GrammarBuilder
from .lexicon import build_lexicon

CLASSES = ("hum", "ani", "thg", "food")
ANIMATE = ("hum", "ani")
TIMES = ("now", "past")
TENSE = {"now": "pres", "past": "past"}  # the tense of be/do in each time
#: Subject agreement values each class can have, with sampling weights.
AGREEMENTS = {"hum": {"3s": 5, "pl": 4, "1s": 2}, "ani": {"3s": 5, "pl": 4},
              "thg": {"3s": 5, "pl": 4}, "food": {"3s": 5, "pl": 4}}
NUMBER_OF = {"3s": "sg", "1s": "sg", "pl": "pl"}
AGR_OF = {"sg": "3s", "pl": "pl"}
CLASS_WEIGHTS = {"hum": 5, "ani": 4, "thg": 1.5, "food": 1}
GENDERS = ("m", "f", "c")  # human singulars: male, female, common (either)
WH_WORD = {"hum": "who", "ani": "what", "thg": "what", "food": "what"}

#: Which object classes an OBJ.* symbol allows (for gapped objects).
OBJECT_COVERS = {"OBJ.hum": {"hum"}, "OBJ.ani": {"ani"}, "OBJ.thg": {"thg"},
                 "OBJ.food": {"food"}, "OBJ.anim": {"hum", "ani"}, "OBJ.theme": {"thg", "food"},
                 "OBJ.any": set(CLASSES), "NPX.theme": {"thg", "food"}}

#: Frames each subject class can head, with weights.
FRAMES = {
    "hum": {"intr": 3, "move": 0.5, "tr_any": 4, "tr_food": 2, "tr_ani": 2, "tr_thg": 2,
            "ditr": 1, "clausal": 0.8, "ctl": 1},
    "ani": {"intr": 3, "sound": 1.5, "move": 0.5, "tr_any": 2, "tr_food": 2, "tr_ani": 1.5,
            "ctl": 0.7},
    "thg": {"move": 1},
    "food": {"move": 1},
}
#: Complements after the verb of each frame ("{cls}" = the subject's class).
COMPLEMENTS = {
    "intr": [(3, ""), (2, "PP"), (1, "ADV"), (0.5, "with OBJ.anim")],
    "sound": [(3, ""), (1, "ADV"), (1, "at OBJ.anim")],
    "move": [(3, ""), (2, "PP"), (1, "ADV")],
    "tr_any": [(4, "OBJ.any"), (1, "OBJ.any PPLOC"), (0.5, "OBJ.any ADV")],
    "tr_food": [(4, "OBJ.food"), (1, "OBJ.food ADV")],
    "tr_ani": [(4, "OBJ.anim"), (1, "OBJ.anim ADV")],
    "tr_thg": [(4, "OBJ.thg"), (1, "OBJ.thg PP")],
    "ditr": [(2, "OBJ.anim NPX.theme"), (2, "OBJ.theme to OBJ.anim")],  # not "give the dog it"
    "clausal": [(2, "that CL.now"), (2, "CL.now"), (1, "that CL.past")],
    "ctl": [(1, "to VX.{cls}.base")],
}
VERB_FORMS = ("base", "ing", "past", "pres.1s", "pres.3s", "pres.pl")

TIME_ADVERBIALS = ["one day", "then", "after that", "the next morning", "that night", "later",
                   "suddenly", "soon", "in the morning", "at last", "after lunch", "every day"]
INTERJECTIONS = ["yeah", "okay", "oh", "uh oh", "wow", "good job", "no", "yes", "bye bye",
                 "thank you", "all done", "oops", "look", "hmm", "alright", "there you go",
                 "here you go", "you did it", "hooray", "night night", "good girl", "good boy",
                 "oh dear", "very good", "that's right", "what's that", "who's that",
                 "uh huh", "okay then", "all gone"]
CLOSERS = ["the end", "and they all lived happily ever after", "it was a very good day",
           "and that was the end of that", "everyone was happy"]


def noun_labels(cls: str, number: str) -> list[str]:
    """Noun labels for a class and number (singular humans are split by gender)."""
    if cls == "hum" and number == "sg":
        return [f"N.hum.sg.{g}" for g in GENDERS]
    return [f"N.{cls}.{number}"]


def _complements(frame: str, cls: str) -> list[tuple[float, list[str]]]:
    return [(w, rhs.format(cls=cls).split()) for w, rhs in COMPLEMENTS[frame]]


def _gapped(frame: str, scls: str, ocls: str) -> list[tuple[float, list[str]]]:
    """The frame's complements with the last object removed where it could be an `ocls` noun."""
    out = []
    for w, rhs in _complements(frame, scls):
        objects = [i for i, s in enumerate(rhs) if s in OBJECT_COVERS]
        if objects and ocls in OBJECT_COVERS[rhs[objects[-1]]]:
            out.append((w, rhs[:objects[-1]] + rhs[objects[-1] + 1:]))
    return out


def finite_options(head: str, agr: str, time: str) -> list[tuple[float, list[str]]]:
    """Finite verb groups over the nonterminal family `head` (``VX.hum`` -> ``VX.hum.pres.3s``...)."""
    if time == "now":
        return [(5, [f"{head}.pres.{agr}"]), (3, [f"BE.pres.{agr}", f"{head}.ing"]),
                (1, ["MOD", f"{head}.base"]), (0.6, [f"DONT.pres.{agr}", f"{head}.base"])]
    return [(6, [f"{head}.past"]), (0.5, [f"BE.past.{agr}", f"{head}.ing"]),
            (0.4, ["didn't", f"{head}.base"])]


def _noun_phrases(g: GrammarBuilder) -> None:
    """Noun phrases (determiner, adjective, relative clause, PP, names), objects and PPs."""
    for cls in CLASSES + ("plc",):
        adj = "ADJ.thg" if cls == "plc" else f"ADJ.{cls}"
        for number in ("sg", "pl"):
            for label in noun_labels(cls, number):
                nom = "NOM" + label[1:]  # NOM.hum.sg.m: a noun with an optional adjective
                g.add(nom, [label], 4)
                g.add(nom, [adj, label], 1.5)
                np = "NP" + label[1:]
                g.add(np, [f"DET.{number}", nom], 6)
                g.add(np, ["POSS", nom], 0.6)
                if number == "pl":
                    g.add(np, [nom], 1.5)  # bare plural: "dogs like cookies"
                if cls != "plc":
                    g.add(np, [f"DET.{number}", nom, f"RC.{cls}.{number}"], 0.7)
                    g.add(np, [f"DET.{number}", nom, "PPMOD"], 0.3)
    for gender in ("m", "f"):
        g.add(f"NP.hum.sg.{gender}", f"NAME.{gender}", 4)
    for gender in GENDERS:
        g.add("NP.hum.sg", f"NP.hum.sg.{gender}", {"m": 2, "f": 2, "c": 1.5}[gender])
    for cls in CLASSES:
        g.add(f"OBJ.{cls}", f"NP.{cls}.sg", 3)
        g.add(f"OBJ.{cls}", f"NP.{cls}.pl", 2)
        g.add(f"OBJ.{cls}", f"OPRO.{cls}", 2)
    g.add("OBJ.anim", "OBJ.hum", 1)
    g.add("OBJ.anim", "OBJ.ani", 1)
    g.add("OBJ.theme", "OBJ.thg", 2)
    g.add("OBJ.theme", "OBJ.food", 1)
    for cls, w in (("thg", 2), ("food", 1)):
        for number in ("sg", "pl"):
            g.add("NPX.theme", f"NP.{cls}.{number}", w)
    for cls, w in (("hum", 1), ("ani", 1), ("thg", 2), ("food", 1)):
        g.add("OBJ.any", f"OBJ.{cls}", w)
    # PPLOC: where something is; PP (after verbs) adds goals; PPMOD modifies a noun.
    for number, w in (("sg", 3), ("pl", 1)):
        g.add("PPLOC", f"P NP.plc.{number}", w)
        g.add("PPLOC", f"P NP.thg.{number}", w * 0.7)
        g.add("PPMOD", f"P NP.plc.{number}", w)
        g.add("PPMOD", f"with NP.thg.{number}", w * 0.5)
    g.add("PPLOC", "in TOWN", 0.3)
    g.add("PP", "PPLOC", 4)
    g.add("PP", "to NP.plc.sg", 2)
    g.add("PP", "to TOWN", 0.5)
    g.add("PP", "home", 0.5)


def _subjects(g: GrammarBuilder) -> None:
    """Subjects per class and agreement: noun phrases, pronouns, demonstratives."""
    for gender in ("m", "f"):
        g.add("SUBJ.hum.3s", f"PRO.3s.{gender}", 2)
    g.add("SUBJ.hum.3s", "NP.hum.sg", 8)
    g.add("SUBJ.hum.pl", "NP.hum.pl", 4)
    g.add("SUBJ.hum.pl", "PRO.pl", 5)
    g.add("SUBJ.hum.1s", "PRO.1s")
    g.add("SUBJ.ani.3s", "NP.ani.sg", 6)
    g.add("SUBJ.ani.3s", "it", 1)
    g.add("SUBJ.ani.pl", "NP.ani.pl", 4)
    g.add("SUBJ.ani.pl", "they", 1)
    for cls in ("thg", "food"):
        g.add(f"SUBJ.{cls}.3s", f"NP.{cls}.sg", 5)
        g.add(f"SUBJ.{cls}.pl", f"NP.{cls}.pl", 4)
        for word, agr in (("it", "3s"), ("this", "3s"), ("that", "3s"),
                          ("they", "pl"), ("these", "pl"), ("those", "pl")):
            g.add(f"SUBJ.{cls}.{agr}", word, 1)


def _verb_phrases(g: GrammarBuilder) -> None:
    """Verb phrases per frame and form, their object-gapped twins, finite groups."""
    for cls, frames in FRAMES.items():
        forms = [f for f in VERB_FORMS if not f.startswith("pres.") or f[5:] in AGREEMENTS[cls]]
        for form in forms:
            for frame, fw in frames.items():
                options = _complements(frame, cls)
                total = sum(w for w, _ in options)
                for w, rhs in options:
                    g.add(f"VX.{cls}.{form}", [f"V.{frame}.{form}"] + rhs, fw * w / total)
                if cls not in ANIMATE:
                    continue
                for ocls in CLASSES:
                    for w, rhs in _gapped(frame, cls, ocls):
                        g.add(f"VXG.{cls}.{ocls}.{form}", [f"V.{frame}.{form}"] + rhs, fw * w)
        for agr in AGREEMENTS[cls]:
            number = NUMBER_OF[agr]
            for time in TIMES:
                vp = f"VP.{cls}.{agr}.{time}"
                for w, rhs in finite_options(f"VX.{cls}", agr, time):
                    g.add(vp, rhs, w * (0.4 if cls in ("thg", "food") else 1))
                g.add(vp, [f"BE.{TENSE[time]}.{agr}", f"PRED.{cls}.{number}"], 3)
                if agr != "1s":
                    g.add(vp, [f"BENEG.{TENSE[time]}.{agr}", f"PRED.{cls}.{number}"], 0.6)
                if cls in ANIMATE:
                    for ocls in CLASSES:
                        for w, rhs in finite_options(f"VXG.{cls}.{ocls}", agr, time):
                            g.add(f"VG.{cls}.{ocls}.{agr}.{time}", rhs, w)
    for form in VERB_FORMS:
        g.add(f"VXR.{form}", f"V.tr_refl.{form}")
    for agr in ("3s", "pl", "1s"):
        for time in TIMES:
            for w, rhs in finite_options("VXR", agr, time):
                g.add(f"VR.{agr}.{time}", rhs, w)


def _predicates(g: GrammarBuilder) -> None:
    """What follows be: adjectives, comparatives, places, predicate nouns."""
    for cls in CLASSES:
        for number in ("sg", "pl"):
            pred = f"PRED.{cls}.{number}"
            g.add(pred, f"ADJ.{cls}", 5)
            g.add(pred, f"very ADJ.{cls}", 1)
            g.add(pred, f"so ADJ.{cls}", 0.5)
            g.add(pred, f"CMP.{cls} than OBJ.{cls}", 1)
            g.add(pred, "PPLOC", 1.5)
            noun = "N.hum.sg.c" if (cls, number) == ("hum", "sg") else f"N.{cls}.{number}"
            article = ["a"] if number == "sg" else []
            g.add(pred, article + [noun], 1)
            g.add(pred, article + [f"ADJ.{cls}", noun], 0.7)
            g.add(pred, ["the", f"SUP.{cls}", noun], 0.3)


def _relative_clauses(g: GrammarBuilder) -> None:
    """Subject relatives (agreeing with the head noun) and object relatives (with a gap)."""
    for cls in CLASSES:
        for number in ("sg", "pl"):
            rc = f"RC.{cls}.{number}"
            agr = AGR_OF[number]
            for time, tw in (("now", 1), ("past", 0.8)):
                g.add(rc, ["that", f"VP.{cls}.{agr}.{time}"], 1.5 * tw)
                if cls == "hum":
                    g.add(rc, ["who", f"VP.{cls}.{agr}.{time}"], 1 * tw)
                for scls in ANIMATE:
                    for sagr, aw in AGREEMENTS[scls].items():
                        g.add(rc, ["that", f"SUBJ.{scls}.{sagr}", f"VG.{scls}.{cls}.{sagr}.{time}"],
                              CLASS_WEIGHTS[scls] * aw * tw / 10)


def _clauses(g: GrammarBuilder) -> None:
    """Declarative, existential and reflexive clauses."""
    for time in TIMES:
        for cls, agreements in AGREEMENTS.items():
            for agr, aw in agreements.items():
                g.add(f"CL.{time}", [f"SUBJ.{cls}.{agr}", f"VP.{cls}.{agr}.{time}"],
                      CLASS_WEIGHTS[cls] * aw)
            for number in ("sg", "pl"):
                be = f"BE.{TENSE[time]}.{AGR_OF[number]}"
                g.add(f"EX.{time}", ["there", be, f"NP.{cls}.{number}"], CLASS_WEIGHTS[cls])
                g.add(f"EX.{time}", ["there", be, f"NP.{cls}.{number}", "PPLOC"], CLASS_WEIGHTS[cls])
        # Reflexive clauses: the subject's number and gender pick the reflexive.
        reflexive_subjects = [(f"NP.hum.sg.{gender}", "3s", f"REFL.sg.{gender}", 2) for gender in GENDERS]
        reflexive_subjects += [("NP.ani.sg", "3s", "REFL.sg.n", 2), ("NP.hum.pl", "pl", "REFL.pl.c", 2),
                               ("NP.ani.pl", "pl", "REFL.pl.n", 1), ("PRO.3s.m", "3s", "himself", 1),
                               ("PRO.3s.f", "3s", "herself", 1), ("PRO.1s", "1s", "myself", 1),
                               ("we", "pl", "ourselves", 0.5), ("they", "pl", "themselves", 0.5),
                               ("you", "pl", "yourself", 0.5)]
        for subject, agr, reflexive, w in reflexive_subjects:
            g.add(f"CLR.{time}", [subject, f"VR.{agr}.{time}", reflexive], w)
            g.add(f"CLR.{time}", [subject, f"VR.{agr}.{time}", reflexive, "ADV"], w * 0.3)


def _questions(g: GrammarBuilder) -> None:
    """Yes/no questions (auxiliary agrees with the subject) and wh-questions."""
    for cls, agreements in AGREEMENTS.items():
        for agr, aw in agreements.items():
            subj, number = f"SUBJ.{cls}.{agr}", NUMBER_OF[agr]
            w = CLASS_WEIGHTS[cls] * aw
            g.add("Q.yn", [f"DO.pres.{agr}", subj, f"VX.{cls}.base"], 3 * w)
            g.add("Q.yn", [f"BE.pres.{agr}", subj, f"PRED.{cls}.{number}"], 2 * w)
            g.add("Q.yn", [f"BE.pres.{agr}", subj, f"VX.{cls}.ing"], 1.5 * w)
            g.add("Q.yn", ["MOD", subj, f"VX.{cls}.base"], w)
            g.add("Q.yn", ["did", subj, f"VX.{cls}.base"], w)
            g.add("Q.yn", [f"BE.past.{agr}", subj, f"PRED.{cls}.{number}"], 0.5 * w)
            g.add("Q.wh", ["where", f"BE.pres.{agr}", subj], w)
            if cls not in ANIMATE:
                continue
            for ocls in CLASSES:
                gap, wh = f"VXG.{cls}.{ocls}", WH_WORD[ocls]
                g.add("Q.wh", [wh, f"DO.pres.{agr}", subj, f"{gap}.base"], w)
                g.add("Q.wh", [wh, f"BE.pres.{agr}", subj, f"{gap}.ing"], 0.6 * w)
                g.add("Q.wh", [wh, "did", subj, f"{gap}.base"], 0.5 * w)
                g.add("Q.wh", [wh, "MOD", subj, f"{gap}.base"], 0.3 * w)
    for time in TIMES:
        g.add("Q.wh", ["who", f"VP.hum.3s.{time}"], 8)
        g.add("Q.wh", ["what", f"VP.thg.3s.{time}"], 2)
    g.add("Q.wh", "what color is NP.thg.sg", 3)
    g.add("Q.wh", "what is this", 5)
    g.add("Q.wh", "what are these", 2)
    g.add("Q.wh", "who is that", 3)
    for cls in CLASSES:
        g.add("Q.wh", f"how many N.{cls}.pl do you see", 1)


def _speech(g: GrammarBuilder) -> None:
    """Child-directed utterances: imperatives, interjections, fragments, vocatives."""
    g.add("IMP", "VX.hum.base", 5)
    for prefix in ("don't", "let's", "please"):
        g.add("IMP", f"{prefix} VX.hum.base", 1)
    g.add("IMP", "look at OBJ.any", 1.5)
    g.add("IMP", "come here", 0.5)
    g.add("IMP", "give me OBJ.theme", 0.7)
    g.add("IMP", "NAME , VX.hum.base", 1)
    g.add("NAME", "NAME.m")
    g.add("NAME", "NAME.f")
    for i, phrase in enumerate(INTERJECTIONS):
        g.add("INTJ", phrase, 1 / (i + 2))
    g.add("INTJ", "hi NAME", 0.3)
    for cls in CLASSES:
        for number in ("sg", "pl"):
            g.add("FRAG", f"NP.{cls}.{number}", CLASS_WEIGHTS[cls])
    g.add("FRAG", "more N.food.pl", 1)
    g.add("FRAG", "NAME", 1)
    for rhs, w in (("CL.now .", 6), ("CL.past .", 1.5), ("EX.now .", 1), ("CLR.now .", 0.4),
                   ("Q.yn ?", 3), ("Q.wh ?", 2.5), ("IMP .", 2), ("IMP !", 1),
                   ("INTJ .", 1.5), ("INTJ !", 1), ("FRAG .", 1), ("FRAG ?", 0.4),
                   ("NAME , IMP !", 0.4)):
        g.add("UTT", rhs, w)


def _story(g: GrammarBuilder) -> None:
    """Story sentences: narration, dialogue in quotes, openings and closings."""
    for i, phrase in enumerate(TIME_ADVERBIALS):
        g.add("TADV", phrase, 1 / (i + 2))
    for rhs, w in (("CL.past .", 8), ("EX.past .", 1), ("CLR.past .", 0.4),
                   ("TADV , CL.past .", 2), ("CL.past and CL.past .", 1),
                   ("CL.past because CL.past .", 0.5), ("when CL.past , CL.past .", 0.5),
                   ("<q CL.now , q> said NAME .", 0.6), ("<q Q.yn ? q> asked NAME .", 0.3),
                   ("<q Q.wh ? q> asked NAME .", 0.2), ("<q IMP ! q> shouted NAME .", 0.3),
                   ("NAME said , <q CL.now . q>", 0.3)):
        g.add("SENT", rhs, w)
    for opening in ("once upon a time , there was", "there was once"):
        for gender in ("m", "f"):
            for noun in (f"NOM.hum.sg.{gender}", "NOM.ani.sg"):
                g.add("OPENER", f"{opening} a {noun} named NAME.{gender} who lived in TOWN .")
                g.add("OPENER", f"{opening} a {noun} named NAME.{gender} .")
    for i, phrase in enumerate(CLOSERS):
        g.add("CLOSER", phrase + " .", 1 / (i + 1))


@lru_cache(maxsize=1)
def demo_grammar() -> Grammar:
    """The (seed-independent) demo grammar; built once per process."""
    g = GrammarBuilder(build_lexicon())
    for part in (_noun_phrases, _subjects, _verb_phrases, _predicates, _relative_clauses,
                 _clauses, _questions, _speech, _story):
        part(g)
    return g.build()
