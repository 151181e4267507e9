"""Per-source cleaning rules on excerpts written in each source's real format."""

import pytest

from babykd.data.corpus import LAYOUTS
from babykd.data.sources import CLEANERS, fix_shouting, split_documents


def test_every_layout_source_has_a_cleaner():
    for layout in LAYOUTS:
        assert set(layout.sources) <= set(CLEANERS), layout.name


def test_blank_lines_separate_documents_without_headers():
    text = "book one line one\nline two\n\n\nbook two\n"
    assert split_documents(text) == [(None, ["book one line one", "line two"]), (None, ["book two"])]


def test_headers_separate_documents_and_blank_lines_are_paragraph_breaks():
    text = "= = = A = = =\npara 1\n\npara 2\n= = = B = = =\nonly\n= = = Empty = = =\n\n"
    assert split_documents(text) == [("A", ["para 1", "para 2"]), ("B", ["only"])]


def test_aochildes():
    raw = "what's that ?\nit's a   chicken .\n.\n"
    assert CLEANERS["aochildes"](raw) == ["what's that?\nit's a chicken."]


def test_childes_2024_with_speaker_tags_and_transcript_headers():
    raw = (
        "= = = Brown/Adam/020304.cha = = =\n"
        "*CHI:\tmore cookie .\n"
        "*MOT:\tyou want xxx more cookies ?\n"
        "*MOT:\txxx .\n"
        "%com:\tmother laughs\n"
        "*CHI:\t[laughs] yeah !\n"
        "= = = Brown/Eve/010600.cha = = =\n"
        "*FAT:\twhat's that ?\n"
    )
    assert CLEANERS["childes"](raw) == [
        "more cookie.\nyou want more cookies?\nyeah!",
        "what's that?",
    ]


def test_childes_substitute_without_tags_keeps_blank_line_documents():
    raw = "what's that ?\nMrs xxx's dog .\n\nwant to stack them for me ?\n"
    assert CLEANERS["childes"](raw) == ["what's that?\nMrs xxx's dog.", "want to stack them for me?"]


def test_switchboard():
    raw = "A:\tWell, <laughter> I think so .\nB:\tUh-huh.\nA:\t<noise>\n\nB:\tHi there.\n"
    assert CLEANERS["switchboard"](raw) == ["Well, I think so.\nUh-huh.", "Hi there."]


def test_bnc_spoken():
    raw = "Well [laughs] I don't know .\n(pause) Yes !\n[cough]\n\nNext one here.\n"
    assert CLEANERS["bnc_spoken"](raw) == ["Well I don't know.\nYes!", "Next one here."]


def test_open_subtitles():
    raw = (
        "Subtitles by SubRip\n"
        "- Where are you going?\n"
        "- [ Music ]\n"
        "\u266a la la la \u266a\n"
        "(laughs) l'm going home.\n"
        "MAN: Stop! l don't know.\n"
        "WHAT lS THlS PLACE? l DON'T KNOW.\n"
        "Downloaded from www.OpenSubtitles.org\n"
    )
    assert CLEANERS["open_subtitles"](raw) == [
        "Where are you going?\nI'm going home.\nStop! I don't know.\nWhat is this place? I don't know."
    ]


def test_qed():
    raw = (
        "&amp;gt;&amp;gt; AMY GOODMAN: Welcome to the show .\n"
        "00:01:12,345 --> 00:01:15,000\n"
        "12\n"
        "&lt;i&gt;Hello&lt;/i&gt; there (Applause)\n"
        "WHAT lS THE ANSWER? lT lS FOUR.\n"
        "We met at 10:30 at Jack&amp;#39;s place.\n"
    )
    assert CLEANERS["qed"](raw) == [
        "Welcome to the show.\nHello there\nWhat is the answer? It is four.\n"
        "We met at 10:30 at Jack's place."
    ]


def test_uppercase_ocr_fix_leaves_short_and_mixed_case_lines_alone():
    assert fix_shouting("OK.") == "OK."
    assert fix_shouting("The NASA launch was late.") == "The NASA launch was late."
    assert fix_shouting("l THlNK l CAN. YES l CAN!") == "I think I can. Yes I can!"


@pytest.mark.parametrize("source", ["simple_wikipedia", "simple_wiki"])
def test_simple_wikipedia(source):
    raw = (
        "= = = April = = =\n"
        "April is the fourth month of the year .\n"
        "= = Events = =\n"
        "It has 30 days.<ref>Calendar facts</ref>\n"
        "\n"
        "= = = Bees = = =\n"
        "Bees are [[insect|insects]] that make '''honey'''.{{citation needed}}\n"
    )
    assert CLEANERS[source](raw) == [
        "April\nApril is the fourth month of the year.\nEvents\nIt has 30 days.",
        "Bees\nBees are insects that make honey.",
    ]


def test_wikipedia_wikitext_escapes():
    raw = "= = = Valkyria = = =\n The game sold 1 @,@ 000 copies , a well @-@ known fact .\n"
    assert CLEANERS["wikipedia"](raw) == ["Valkyria\nThe game sold 1,000 copies, a well-known fact."]


def test_gutenberg_headers_illustrations_and_italics():
    raw = (
        "The Project Gutenberg EBook of Oz\n"
        "This eBook is for the use of anyone anywhere\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK OZ ***\n"
        "THE WONDERFUL WIZARD OF OZ\n"
        "[Illustration: Dorothy and\n"
        "Toto]\n"
        "Dorothy lived in the _midst_ of the great Kansas prairies.[1]\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK OZ ***\n"
        "Section 1. General Terms of Use\n"
        "\n"
        "More licence text.\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK GRIMM ***\n"
        "Once upon a time [Illustration] there was a king.\n"
    )
    assert CLEANERS["gutenberg"](raw) == [
        "THE WONDERFUL WIZARD OF OZ\nDorothy lived in the midst of the great Kansas prairies.",
        "Once upon a time there was a king.",
    ]


def test_gutenberg_substitute_layout_without_markers_is_kept():
    raw = "A BOOK OF MYTHS\n(MRS. JOHN LANG)\nJust as a little child holds out its hands.\n\nNext book\n"
    assert CLEANERS["gutenberg"](raw) == [
        "A BOOK OF MYTHS\n(MRS. JOHN LANG)\nJust as a little child holds out its hands.",
        "Next book",
    ]


def test_cbt():
    raw = (
        "_BOOK_TITLE_ : Andrew_Lang___Prince_Prigio.txt.out\n"
        "CHAPTER I. -LRB- Dedication -RRB-\n"
        "`` I do n't know , '' said the king 's son .\n"
        "_BOOK_TITLE_ : L._Frank_Baum___Ozma.txt.out\n"
        "Once upon a time .\n"
    )
    assert CLEANERS["cbt"](raw) == [
        'CHAPTER I. (Dedication)\n"I don\'t know," said the king\'s son.',
        "Once upon a time.",
    ]


def test_children_stories():
    raw = "The Little Red Hen\n  Once upon a time\tthere was a hen.  \n\nThe Gingerbread Man\n"
    assert CLEANERS["children_stories"](raw) == [
        "The Little Red Hen\nOnce upon a time there was a hen.",
        "The Gingerbread Man",
    ]


def test_plain_document():
    assert CLEANERS["plain"]("  An  article\n\nwith two paragraphs. ") == ["An article\nwith two paragraphs."]
    assert CLEANERS["plain"](" \n ") == []
