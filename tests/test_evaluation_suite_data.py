"""SuiteData reads the 2025 suite the same way from a zip (with or without a top folder) and a directory."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from babykd.evaluation.suite_data import MissingEvalData, SuiteData, default_suite_source

FILES = {
    "full_eval/aoa/cdi_human.csv": b"word,aoa\nball,16\n",
    "full_eval/wug_past_tense/wug_past_tense.jsonl": b'{"ratio": 0.5}\n',
    "fast_eval/blimp_fast/a.jsonl": b"{}\n",
    "fast_eval/blimp_fast/b.jsonl": b"{}\n",
}


def _write_zip(path: Path, prefix: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in FILES.items():
            zf.writestr(prefix + rel, data)
    return path


def _write_dir(root: Path) -> Path:
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture(params=["zip", "zip-with-top-folder", "dir", "dir-with-top-folder"])
def suite(request: pytest.FixtureRequest, tmp_path: Path) -> SuiteData:
    kind = request.param
    if kind == "zip":
        return SuiteData(_write_zip(tmp_path / "s.zip", ""))
    if kind == "zip-with-top-folder":
        return SuiteData(_write_zip(tmp_path / "s.zip", "evaluation_data_2025/"))
    if kind == "dir":
        return SuiteData(_write_dir(tmp_path / "s"))
    _write_dir(tmp_path / "s" / "evaluation_data_2025")
    return SuiteData(tmp_path / "s")


def test_same_view_of_every_layout(suite: SuiteData) -> None:
    assert suite.exists("full_eval/aoa/cdi_human.csv")
    assert not suite.exists("full_eval/aoa/missing.csv")
    assert suite.read_bytes("full_eval/aoa/cdi_human.csv") == FILES["full_eval/aoa/cdi_human.csv"]
    assert suite.list("fast_eval/blimp_fast") == ["fast_eval/blimp_fast/a.jsonl", "fast_eval/blimp_fast/b.jsonl"]
    assert suite.list("full_eval") == []  # files DIRECTLY in the folder only
    assert suite.list("full_eval/comps") == []


def test_missing_file_names_file_and_source(suite: SuiteData) -> None:
    with pytest.raises(MissingEvalData, match=r"full_eval/comps/comps\.jsonl.*" + str(suite.source.name)):
        suite.read_bytes("full_eval/comps/comps.jsonl")


def test_paths_outside_the_suite_are_refused(suite: SuiteData) -> None:
    with pytest.raises(ValueError, match="inside the suite"):
        suite.exists("../secret")


def test_missing_source_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingEvalData, match=str(tmp_path / "nope.zip")):
        SuiteData(tmp_path / "nope.zip")
    monkeypatch.setenv("BABYKD_EVAL_DATA_2025", str(tmp_path / "x.zip"))
    assert default_suite_source() == tmp_path / "x.zip"
    monkeypatch.delenv("BABYKD_EVAL_DATA_2025")
    monkeypatch.setenv("BABYKD_SHARED", str(tmp_path))
    assert default_suite_source() == tmp_path / "evaluation_data_2025.zip"
