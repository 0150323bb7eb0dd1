"""notebooks/explore.ipynb runs against a filtered run and prints the right numbers."""

from __future__ import annotations

from pathlib import Path

import nbformat
from filtered_fixture import write_filtered_dir
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"


def _stream_text(nb) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream" and out.get("name") == "stdout"
    )


def test_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code)


def test_notebook_runs_against_a_filtered_run(tmp_path, monkeypatch):
    fx = write_filtered_dir(tmp_path / "filtered", n_kept=12, n_rejected=7)
    monkeypatch.setenv("FORGE_RUN_DIR", str(fx.root))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError (with the cell's traceback) if any cell fails.
    NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = _stream_text(nb)
    assert f"run directory: {fx.root}" in text
    assert "kept: 12\n" in text and "rejected: 7\n" in text
    assert "kept ratio: 63.2%" in text
    # The per-check table agrees with the manifest the fixture wrote.
    for check, n in fx.rejected_by_check.items():
        assert any(
            line.split() == [check, str(n), f"{100 * n / 7:.1f}", str(n)]
            for line in text.splitlines()
        ), f"no table line for {check}"
    # The score histograms and examples were drawn.
    images = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert len(images) >= 3
    assert "REJECTED: " in text and f"[kept] {fx.kept_keys[0]}" in text
