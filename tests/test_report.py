"""The batch runner (reuse, failures, summary) and the report notebook on real smoke results."""
import json
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from dynn import report

ROOT = Path(__file__).resolve().parents[1]


def _tiny_notebook(path: Path, body: str) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell('accuracy: float = 90.0  # the accuracy to report\n'
                           'run_dir: str = ""  # output folder\nfigures_dir: str = ""  # figures folder')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(body)]
    nbformat.write(nb, path)


WRITE_RESULTS = ("import dynn\n"
                 "dynn.runs.write_results(run_dir, method='toy', dataset='none', metrics={}, params={},\n"
                 "    points=[{'label': 'a', 'accuracy': accuracy, 'macs': 1}])")


@pytest.fixture
def workbook(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    _tiny_notebook(tmp_path / "notebooks" / "good.ipynb", WRITE_RESULTS)
    _tiny_notebook(tmp_path / "notebooks" / "bad.ipynb", "raise RuntimeError('boom')")
    (tmp_path / "params" / "good").mkdir(parents=True)
    (tmp_path / "params" / "good" / "report.yaml").write_text(yaml.safe_dump({"runs": [{}, {"accuracy": 50.0}]}))
    return tmp_path


@pytest.mark.slow
def test_runner_reuses_finished_runs_and_reports_failures(workbook, capsys):
    runs = report.plan(workbook)
    assert [(r.notebook, r.overrides) for r in runs] == [("bad", {}), ("good", {}), ("good", {"accuracy": 50.0})]
    assert runs[1].figures_dir == workbook / "figures" / "good"  # defaults write the committed figures
    assert runs[2].figures_dir == runs[2].run_dir / "figures"    # sweep runs keep theirs
    code = report.main(["--root", str(workbook), "--skip-report"])
    out = capsys.readouterr().out
    assert code == 1 and "failed" in out and "boom" in out
    results = sorted(json.loads(p.read_text())["points"][0]["accuracy"]
                     for p in (workbook / "runs" / "good").glob("*/results.json"))
    assert results == [50.0, 90.0]
    report.main(["--root", str(workbook), "--skip-report", "--only", "good"])
    out = capsys.readouterr().out
    assert out.count(": reused runs/good/") == 2 and "2 ok or reused, 0 failed" in out
    with pytest.raises(ValueError, match="unknown parameters"):
        (workbook / "params" / "good" / "report.yaml").write_text(yaml.safe_dump({"runs": [{"acc": 1}]}))
        report.plan(workbook)


@pytest.mark.slow
def test_report_notebook_reads_smoke_results(tmp_path):
    runs_dir = tmp_path / "runs"
    smoke = yaml.safe_load((ROOT / "params" / "resnet_baseline" / "smoke.yaml").read_text())
    papermill.execute_notebook(str(ROOT / "notebooks" / "resnet_baseline.ipynb"), str(tmp_path / "b.ipynb"),
                               parameters={**smoke, "run_dir": str(runs_dir / "resnet_baseline" / "k"),
                                           "figures_dir": str(tmp_path / "fb")}, progress_bar=False, cwd=str(ROOT))
    papermill.execute_notebook(str(ROOT / "notebooks" / "report.ipynb"), str(tmp_path / "r.ipynb"),
                               parameters={"runs_dir": str(runs_dir), "run_dir": str(tmp_path / "rep"),
                                           "figures_dir": str(tmp_path / "fig")}, progress_bar=False, cwd=str(ROOT))
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "resnet_baseline" in summary and "small-scale" in summary
    assert (tmp_path / "fig" / "classification_accuracy_vs_cost.png").stat().st_size > 1000
