"""The batch runner (manifest, seeds, stale runs, failures, a hung kernel) and the report notebook."""

import json
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from dynn import CODE_VERSION, report, results

ROOT = Path(__file__).resolve().parents[1]


def _tiny_notebook(path: Path, body: str) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell(
        "accuracy: float = 90.0  # the accuracy to report\nseed: int = 0  # seed\n"
        'run_dir: str = ""  # output folder\nfigures_dir: str = ""  # figures folder'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(body)]
    nbformat.write(nb, path)


WRITE_RESULTS = (
    "import dynn\n"
    "point = {'label': 'a', 'accuracy': accuracy + seed, 'macs': 2e7, 'role': 'method', 'series': 's',\n"
    "         'selection': 'validation'}\n"
    "base = {'label': 'b', 'accuracy': 80.0, 'macs': 4e7, 'role': 'baseline', 'series': 'static', 'selection': 'fixed'}\n"
    "claim = dynn.claims.claim('c1', 'a beats b', paper='Fig. 1', value=accuracy + seed - 80, ci=None, holds=True,\n"
    "                          rule='difference above 0', threshold=0.0)\n"
    "import torch\nfrom pathlib import Path\n"
    "run = dynn.runs.Run('good', {}, Path(run_dir), Path(figures_dir), 'cpu')\n"
    "point['deployed'] = run.save_deployed('a', torch.nn.Linear(4, 2), torch.randn(3, 4))\n"
    "dynn.runs.write_results(run_dir, method='good', dataset='digits', metrics={}, params={'seed': seed},\n"
    "                        points=[point, base], claims=[claim])\n"
)


@pytest.fixture
def workbook(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    _tiny_notebook(tmp_path / "notebooks" / "good.ipynb", WRITE_RESULTS)
    _tiny_notebook(tmp_path / "notebooks" / "bad.ipynb", "raise RuntimeError('boom')")
    _tiny_notebook(tmp_path / "notebooks" / "hung.ipynb", "import time\ntime.sleep(600)")
    (tmp_path / "params" / "good").mkdir(parents=True)
    (tmp_path / "params" / "good" / "report.yaml").write_text(
        yaml.safe_dump({"runs": [{}, {"accuracy": 50.0}], "seeds": [0, 1]})
    )
    return tmp_path


def _stale_and_orphan(workbook: Path, defaults_run: Path) -> None:
    """A finished run of older code where the defaults run goes, and a hand-made run nobody planned."""
    for run_dir, version in ((defaults_run, "0.0.1"), (workbook / "runs" / "good" / "handmade", CODE_VERSION)):
        run_dir.mkdir(parents=True)
        (run_dir / "executed.ipynb").write_text("{}")
        (run_dir / "results.json").write_text(
            json.dumps(
                {
                    "points": [
                        {
                            "label": "stale",
                            "accuracy": 12.3,
                            "macs": 1,
                            "role": "method",
                            "series": "s",
                            "selection": "validation",
                            "task": "classification",
                        }
                    ],
                    "environment": {"code_version": version, "git_sha": "old"},
                    "params": {},
                    "claims": [],
                }
            )
        )


@pytest.mark.slow
def test_runner_writes_a_manifest_isolates_failures_and_never_reads_stale_runs(workbook, tmp_path, capsys):
    planned = report.plan(workbook)
    assert [(r.notebook, r.overrides) for r in planned] == [
        ("bad", {}),
        ("good", {}),
        ("good", {"seed": 1}),
        ("good", {"accuracy": 50.0}),
        ("good", {"accuracy": 50.0, "seed": 1}),
        ("hung", {}),
    ]
    assert planned[1].figures_dir == workbook / "figures" / "good"  # defaults, seed 0: the committed gallery
    assert planned[2].figures_dir == planned[2].run_dir / "figures"  # every other run keeps its own
    _stale_and_orphan(workbook, planned[1].run_dir)

    code = report.main(["--root", str(workbook), "--skip-report", "--timeout", "60", "-j", "2"])
    out = capsys.readouterr().out
    assert code == 1 and "boom" in out and "timeout" in out
    manifest = json.loads((workbook / "runs" / "manifest.json").read_text())
    status = {(e["notebook"], json.dumps(e["parameters"], sort_keys=True)): e["status"] for e in manifest["runs"]}
    assert status[("bad", "{}")] == "failed" and status[("hung", "{}")] == "timeout"
    assert [s for (nb, _), s in status.items() if nb == "good"] == ["ok"] * 4  # the stale run was redone
    assert all(e["seconds"] > 0 and e["code_version"] == CODE_VERSION for e in manifest["runs"])

    entries = results.finished_runs(workbook / "runs")
    points = results.points_table(entries)
    assert sorted(points[points["label"] == "a"]["accuracy"]) == [50.0, 51.0, 90.0, 91.0]
    assert "stale" not in set(points["label"])  # neither the old-code run nor the hand-made one
    over_seeds = results.aggregate_seeds(points)
    row = over_seeds[(over_seeds["label"] == "a") & (over_seeds["accuracy"] == 90.5)].iloc[0]
    assert row["seeds"] == 2 and row["accuracy_low"] < 90.5 < row["accuracy_high"]
    claims = results.claims_table(entries)
    assert len(claims) == 2 and set(claims["seeds"]) == {2}

    report.main(["--root", str(workbook), "--skip-report", "--only", "good"])
    assert capsys.readouterr().out.count(": reused (made at") == 4

    with pytest.raises(ValueError, match="unknown parameters"):
        (workbook / "params" / "good" / "report.yaml").write_text(yaml.safe_dump({"runs": [{"acc": 1}]}))
        report.plan(workbook)

    # the report notebook reads the manifest's runs and writes the claims table
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "report.ipynb"),
        str(tmp_path / "r.ipynb"),
        parameters={
            "runs_dir": str(workbook / "runs"),
            "run_dir": str(tmp_path / "rep"),
            "figures_dir": str(tmp_path / "fig"),
        },
        progress_bar=False,
        cwd=str(ROOT),
    )
    assert "small-scale" in (tmp_path / "rep" / "summary.md").read_text()
    claims_md = (tmp_path / "fig" / "claims.md").read_text()
    assert "a beats b" in claims_md and "✓" in claims_md
    assert (tmp_path / "fig" / "classification_accuracy_vs_cost.png").stat().st_size > 1000
    latency = results.retime_deployed(entries, batch=4, rounds=2, min_run_time=0.01)
    assert set(latency["batch"]) == {1, 4} and len(latency) == 2 * 4  # every deployed point of the 4 runs
    assert (latency["median_ms"] > 0).all()
