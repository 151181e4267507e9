"""Finding and reading corpora: both BabyLM layouts from directories and zips, plain text, errors."""

import os
import zipfile
from pathlib import Path

import pytest

import babykd
from babykd.data.corpus import CorpusError, CorpusNotFoundError, open_corpus
from babykd.data.pipeline import check_dev_not_in_train, clean_corpus, cleaning_examples
from babykd.data.statistics import source_statistics

LAYOUT_2024 = {
    "train_10M/childes.train": "*CHI:\tmore cookie .\n*MOT:\tyou want xxx ?\n",
    "train_10M/switchboard.train": "A:\tHi there .\nB:\tHello .\n\nA:\tSecond call .\n",
    "dev/childes.dev": "*MOT:\twhat's that ?\n",
}
LAYOUT_2023 = {
    "babylm_10M/aochildes.train": "it's a chicken .\n",
    "babylm_10M/simple_wikipedia.train": "= = = April = = =\nApril is a month .\n",
    "babylm_dev/qed.dev": "&amp;gt;&amp;gt; Hello class .\n",
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def write_zip(path: Path, files: dict[str, str], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(prefix + name, text)
    return path


def cleaned(corpus, split):
    return {part.file.source: part.documents for part in corpus.read(split)}


def test_2024_layout_from_directory(tmp_path):
    corpus = open_corpus(write_tree(tmp_path, LAYOUT_2024))
    assert corpus.layout == "2024"
    assert cleaned(corpus, "train") == {
        "childes": ["more cookie.\nyou want?"],
        "switchboard": ["Hi there.\nHello.", "Second call."],
    }
    assert cleaned(corpus, "dev") == {"childes": ["what's that?"]}


def test_2023_layout_from_directory(tmp_path):
    corpus = open_corpus(write_tree(tmp_path, LAYOUT_2023))
    assert corpus.layout == "2023"
    assert cleaned(corpus, "train") == {
        "aochildes": ["it's a chicken."],
        "simple_wikipedia": ["April\nApril is a month."],
    }
    assert cleaned(corpus, "dev") == {"qed": ["Hello class."]}


@pytest.mark.parametrize("prefix", ["", "babylm_data/"])
@pytest.mark.parametrize("files,layout", [(LAYOUT_2024, "2024"), (LAYOUT_2023, "2023")])
def test_layouts_from_zip_top_level_or_one_folder_down(tmp_path, files, layout, prefix):
    corpus = open_corpus(write_zip(tmp_path / "corpus.zip", files, prefix))
    assert corpus.layout == layout
    from_dir = open_corpus(write_tree(tmp_path / "unpacked", files))
    for split in ("train", "dev"):
        assert cleaned(corpus, split) == cleaned(from_dir, split)


def test_directory_with_one_extra_folder(tmp_path):
    write_tree(tmp_path / "babylm_data", LAYOUT_2024)
    assert open_corpus(tmp_path).layout == "2024"


def test_unknown_source_names_the_file(tmp_path):
    write_tree(tmp_path, {**LAYOUT_2024, "train_10M/cbt.train": "a story .\n"})
    with pytest.raises(CorpusError, match=r"train_10M/cbt\.train: unknown source 'cbt' for the 2024 layout"):
        open_corpus(tmp_path)


def test_empty_file_names_the_file(tmp_path):
    write_tree(tmp_path, {**LAYOUT_2024, "dev/childes.dev": " \n\n"})
    with pytest.raises(CorpusError, match=r"dev/childes\.dev: file is empty"):
        open_corpus(tmp_path)


def test_empty_file_in_zip_names_the_member(tmp_path):
    archive = write_zip(tmp_path / "c.zip", {**LAYOUT_2023, "babylm_10M/cbt.train": ""})
    with pytest.raises(CorpusError, match=r"c\.zip/babylm_10M/cbt\.train: file is empty"):
        open_corpus(archive)


def test_missing_split_directory(tmp_path):
    write_tree(tmp_path, {k: v for k, v in LAYOUT_2024.items() if not k.startswith("dev/")})
    with pytest.raises(CorpusNotFoundError, match=r"/dev: missing dev split") as caught:
        open_corpus(tmp_path)
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, ValueError)
    assert caught.value.path == str(tmp_path / "dev")


def test_missing_split_files_in_zip(tmp_path):
    files = {k: v for k, v in LAYOUT_2023.items() if not k.endswith(".dev")}
    archive = write_zip(tmp_path / "d.zip", {**files, "babylm_dev/qed.txt": "not a .dev file\n"})
    message = r"d\.zip/babylm_dev/?: missing dev split: no \*\.dev files"
    with pytest.raises(CorpusNotFoundError, match=message):
        open_corpus(archive)


def test_missing_path(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="nowhere: no such file or directory"):
        open_corpus(tmp_path / "nowhere")


def test_zip_without_layout(tmp_path):
    archive = write_zip(tmp_path / "c.zip", {"notes/readme.txt": "hello\n"})
    with pytest.raises(CorpusError, match=r"c\.zip: no BabyLM layout found \(expected train_10M/ \+ dev/"):
        open_corpus(archive)


def test_plain_text_one_document_per_line_with_hold_out(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("".join(f"Document  {i} .\n\n" for i in range(25)), encoding="utf-8")
    corpus = open_corpus(path, dev_every=5)
    assert corpus.layout == "plain"
    train = [d for p in corpus.read("train") for d in p.documents]
    dev = [d for p in corpus.read("dev") for d in p.documents]
    assert dev == [f"Document {i} ." for i in (4, 9, 14, 19, 24)]
    assert len(train) == 20 and not set(train) & set(dev)


def test_plain_text_tagged_documents_and_named_splits(tmp_path):
    (tmp_path / "train.txt").write_text(
        "<s> Aachen\nAachen is a city. </s>\n<s>Aardvark\n\nAn animal.</s>\n", encoding="utf-8"
    )
    (tmp_path / "val.txt").write_text("<s>Abacus\nA counting frame.</s>", encoding="utf-8")
    (tmp_path / "test.txt").write_text("<s>Secret test text.</s>", encoding="utf-8")
    corpus = open_corpus(tmp_path)
    assert [(f.path.name, f.split, f.doc_format) for f in corpus.files] == [
        ("train.txt", "train", "tagged"),
        ("val.txt", "dev", "tagged"),
    ]
    assert cleaned(corpus, "train") == {"plain": ["Aachen\nAachen is a city.", "Aardvark\nAn animal."]}
    assert cleaned(corpus, "dev") == {"plain": ["Abacus\nA counting frame."]}


def test_plain_text_forced_line_format_ignores_tags(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("<s>one</s>\ntwo\n", encoding="utf-8")
    part = open_corpus(path, doc_format="lines", dev_every=2).read("train")[0]
    assert part.documents == ["<s>one</s>"]


def test_plain_text_stray_text_outside_tags_names_the_line(tmp_path):
    path = tmp_path / "enc.txt"
    path.write_text("<s>one</s>\n<s>two</s>\nforgotten closing tag <s>three\n", encoding="utf-8")
    corpus = open_corpus(path)
    with pytest.raises(CorpusError, match=r"enc\.txt: line 3: text outside <s> \.\.\. </s>"):
        corpus.read("train")


def test_clean_corpus_writes_each_file_and_examples_show_before_after(tmp_path):
    corpus = open_corpus(write_tree(tmp_path / "c", LAYOUT_2024))
    written = clean_corpus(corpus, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "dev/childes.txt", "train/childes.txt", "train/switchboard.txt",
    ]
    assert (tmp_path / "out/train/switchboard.txt").read_text() == "Hi there.\nHello.\n\nSecond call.\n"
    examples = {e.source: e for e in cleaning_examples(corpus)}
    assert examples["childes"].before == LAYOUT_2024["train_10M/childes.train"]
    assert examples["childes"].after == "more cookie.\nyou want?"
    short = cleaning_examples(corpus, max_chars=25)
    assert [e.before for e in short if e.source == "childes"] == ["*CHI:\tmore cookie .\n"]


SHARED = Path(os.environ.get("BABYKD_SHARED", babykd.REPO_ROOT.parent / "shared"))
SUBSTITUTE = SHARED / "corpus" / "substitute_10M.zip"


def test_substitute_corpus_layout_and_first_documents():
    if not SUBSTITUTE.is_file():
        pytest.skip(f"../shared not found: no substitute corpus at {SUBSTITUTE}")
    corpus = open_corpus(SUBSTITUTE)
    assert corpus.layout == "2024"
    assert sorted((f.split, f.source) for f in corpus.files) == [
        ("dev", "childes"), ("dev", "gutenberg"), ("train", "childes"), ("train", "gutenberg"),
    ]
    childes = next(f for f in corpus.files if (f.split, f.source) == ("train", "childes"))
    first = childes.clean(childes.excerpt(200_000))
    assert len(first) > 5  # transcripts separated by blank lines stay separate documents
    assert first[0].startswith("what's that?\nit's a chicken.\n")
    books = next(f for f in corpus.files if (f.split, f.source) == ("train", "gutenberg"))
    assert books.clean(books.excerpt(2000))[0].startswith("A BOOK OF MYTHS\n")


def deflated_zip(path: Path, files: dict[str, str]) -> bytes:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path.read_bytes()


CORRUPTIBLE = {**LAYOUT_2024, "train_10M/childes.train": "*CHI:\tmore cookie please .\n" * 2000}


def test_truncated_zip_names_the_file_and_the_cause(tmp_path):
    data = deflated_zip(tmp_path / "whole.zip", CORRUPTIBLE)
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])  # an interrupted download
    with pytest.raises(CorpusError, match=r"cut\.zip: corrupt or truncated zip \(zipfile\.BadZipFile"):
        open_corpus(tmp_path / "cut.zip")


def test_corrupt_zip_member_names_the_member_and_the_cause(tmp_path):
    data = bytearray(deflated_zip(tmp_path / "bad.zip", CORRUPTIBLE))
    start = data.find(b"train_10M/childes.train") + 40  # inside the member's compressed data
    data[start : start + 30] = bytes(b ^ 0xFF for b in data[start : start + 30])
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"bad\.zip/train_10M/childes\.train: corrupt or truncated zip \(zlib\.error"):
        open_corpus(tmp_path / "bad.zip")


def test_hidden_folders_are_skipped_and_a_line_corpus_may_quote_tags(tmp_path):
    text = "".join(f"line {i} may quote <s> in its text .\n" for i in range(20))
    write_tree(tmp_path, {"corpus.txt": text, ".ipynb_checkpoints/corpus-checkpoint.txt": text,
                          "notes/.hidden.txt": "secret .\n"})
    corpus = open_corpus(tmp_path)
    assert [(f.path.name, f.doc_format) for f in corpus.files] == [("corpus.txt", "lines")]
    assert len(cleaned(corpus, "train")["plain"]) == 18
    tagged = write_tree(tmp_path / "tagged", {"c.txt": "\n  <s>one</s>\n<s>two</s>\n"})
    assert cleaned(open_corpus(tagged, dev_every=2), "train") == {"plain": ["one"]}


def test_control_characters_are_stripped_and_counted(tmp_path):
    path = write_tree(tmp_path, {"c.txt": "the dog\x00 runs .\nthe cat\x7f sits\x1b .\n\ta\tbird .\nfour\x85th .\n"})
    parts = open_corpus(path / "c.txt", dev_every=2).read("train")  # documents 1 and 3 are dev
    assert parts[0].documents == ["the dog runs .", "a bird ."]
    assert [row.control_chars for row in source_statistics(parts)] == [3]


def test_a_corpus_whose_dev_documents_are_mostly_in_train_is_refused():
    documents = {"train": ["a b c .", "d e f .", "yes ."], "dev": ["a b c .", "d e f .", "g h ."]}
    with pytest.raises(CorpusError, match=r"corpus: 2 of the 3 dev documents also occur in train \(exact duplicates\)"):
        check_dev_not_in_train("corpus", documents)
    assert check_dev_not_in_train("corpus", {**documents, "dev": ["yes .", "g h .", "i j ."]}) == 1
