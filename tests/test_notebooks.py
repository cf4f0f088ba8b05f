"""Every notebook runs as a user would run it (papermill, its smoke parameters) and is committed clean."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb"))
PAPER_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem != "report"]


def _ids(paths):
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_clean_and_parametrized(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code"
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be tagged 'parameters'"
    for cell in code:
        assert not cell.get("outputs"), f"{path.name}: commit without outputs"
        assert cell.get("execution_count") is None, f"{path.name}: commit without execution counts"
    for line in code[0].source.splitlines():
        if "#" in line:
            assert "=" not in line.split("#", 1)[1], (
                f"{path.name}: papermill cannot parse '=' in a parameter comment: {line}"
            )
    params = papermill.inspect_notebook(str(path))
    for name, info in params.items():
        assert info["help"], f"{path.name}: parameter {name!r} needs a trailing comment (shown by --help-notebook)"
        assert info["inferred_type_name"] != "None", f"{path.name}: parameter {name!r} needs a type annotation"


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=_ids(PAPER_NOTEBOOKS))
def test_notebook_runs_with_smoke_parameters(path, tmp_path):
    smoke = ROOT / "params" / path.stem / "smoke.yaml"
    assert smoke.exists(), f"missing {smoke.relative_to(ROOT)}"
    params = yaml.safe_load(smoke.read_text()) or {}
    params.update(run_dir=str(tmp_path / "run"), figures_dir=str(tmp_path / "figures"))
    papermill.execute_notebook(
        str(path),
        str(tmp_path / "executed.ipynb"),
        parameters=params,
        cwd=str(ROOT),
        progress_bar=False,
        kernel_name="python3",
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["points"], "results.json has no accuracy–cost points"
    for point in results["points"]:
        assert 0 <= point["accuracy"] <= 100 and point["macs"] > 0
    assert results["environment"]["torch"]
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    widget_outputs = [
        o
        for c in executed.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert not widget_outputs, "progress must be text, so saved notebooks render in static views"
    figures = list((tmp_path / "figures").glob("*.png"))
    assert figures, "the notebook wrote no figure"
    assert all(f.stat().st_size > 1000 for f in figures)


# What JupyterLab writes when it opens a notebook and starts its kernel: committed this way,
# opening a notebook does not mark it modified and autosave does not rewrite the file.
JUPYTERLAB_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
JUPYTERLAB_LANGUAGE_INFO_KEYS = {
    "codemirror_mode",
    "file_extension",
    "mimetype",
    "name",
    "nbconvert_exporter",
    "pygments_lexer",
    "version",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stored_as_jupyterlab_writes_it(path):
    text = path.read_text()
    nb = nbformat.reads(text, as_version=4)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5), "nbformat 4.5 (cell ids), as JupyterLab writes"
    assert all(cell.get("id") for cell in nb.cells), "every cell needs an id (JupyterLab adds missing ones)"
    assert nb.metadata.get("kernelspec") == JUPYTERLAB_KERNELSPEC
    assert set(nb.metadata.get("language_info", {})) == JUPYTERLAB_LANGUAGE_INFO_KEYS
    assert text == nbformat.writes(nb) + "\n", "formatting differs from nbformat's (indent 1, trailing newline)"


@pytest.mark.slow
def test_readme_papermill_example_leaves_the_checkout_clean(tmp_path):
    """An ad-hoc run writes into runs/ (ignored), never into the committed figures/."""
    status = lambda: subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    runs_before = set((ROOT / "runs").glob("resnet_baseline/*")) if (ROOT / "runs").exists() else set()
    before = status()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "notebooks/resnet_baseline.ipynb",
            str(tmp_path / "out.ipynb"),
            "-f",
            "params/resnet_baseline/smoke.yaml",
            "--no-progress-bar",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    created = set((ROOT / "runs").glob("resnet_baseline/*")) - runs_before
    try:
        assert out.returncode == 0, out.stderr[-2000:]
        assert status() == before
        assert any((d / "figures" / "accuracy_vs_cost.png").exists() for d in created)
    finally:
        for d in created:
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_a_data_error_stops_the_notebook_before_any_run_directory(tmp_path):
    """A mis-laid dataset is reported in the validation cell: nothing is written under runs/."""
    before = set((ROOT / "runs").glob("resnet_baseline/*")) if (ROOT / "runs").exists() else set()
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "resnet_baseline.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"dataset": "cifar10", "data_root": str(tmp_path)},
            cwd=str(ROOT),
            progress_bar=False,
            kernel_name="python3",
        )
    assert "data_root" in str(err.value) and "cifar-10-batches-py" in str(err.value)
    after = set((ROOT / "runs").glob("resnet_baseline/*")) if (ROOT / "runs").exists() else set()
    assert after == before
