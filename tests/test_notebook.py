"""cleaning_and_tokenization.ipynb runs headless on the built-in corpus, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

from babykd import REPO_ROOT

NOTEBOOK = REPO_ROOT / "cleaning_and_tokenization.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook executed top to bottom in a scratch directory (its outputs land there)."""
    workdir = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    return notebook, workdir


def outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_notebook_runs_and_shows_every_step(executed: tuple[nbformat.NotebookNode, Path]) -> None:
    notebook, workdir = executed
    assert not [o for o in outputs(notebook) if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs(notebook) if o.output_type == "stream")
    markdown = "\n".join(o.data["text/markdown"] for o in outputs(notebook) if "text/markdown" in o.get("data", {}))
    assert "--- before" in text and "--- after" in text
    assert "| childes |" in markdown and "| gutenberg |" in markdown and "tokens/word" in markdown
    assert any("image/png" in o.get("data", {}) for o in outputs(notebook))  # the length histogram
    assert "chunks of 64" in text and "epoch 1: chunks" in text
    assert (workdir / "notebook_output" / "tokenizer" / "tokenizer.json").is_file()


def test_notebook_calls_the_package_and_defines_nothing() -> None:
    """Its code cells only call babykd: logic living in the notebook would be untested and drift."""
    source = "\n".join(cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells
                       if cell.cell_type == "code")
    assert "from babykd" in source
    assert not [line for line in source.splitlines() if line.lstrip().startswith(("def ", "class ", "lambda"))]
