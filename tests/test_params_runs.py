"""Parameter validation errors, the run directory contract and atomic writes."""
import json

import pytest

from dynn import params as P
from dynn import runs


SPEC = {
    "dataset": P.Choice(["mnist5k", "cifar10"]),
    "data_root": P.data_root_rule(),
    "gamma": P.Number(min=0),
    "epochs": P.Number(min=1, integer=True),
    "ratios": P.ListOf(P.Number(min=0, max=1)),
    "interactive": P.Flag(),
    "run_dir": P.Text(),
}
GOOD = dict(dataset="mnist5k", data_root="", gamma=5.0, epochs=2, ratios=[0.5, 0.75], interactive=False, run_dir="")


def test_valid_parameters_pass():
    assert P.check(dict(GOOD), SPEC) == GOOD


def test_all_problems_are_reported_at_once_with_what_is_allowed():
    bad = dict(GOOD, dataset="imagenet", gamma=-1, epochs=1.5, ratios=[0.5, 2], interactive="yes")
    with pytest.raises(P.ParameterError) as err:
        P.check(bad, SPEC)
    msg = str(err.value)
    assert "'dataset' = 'imagenet': allowed: 'mnist5k', 'cifar10'" in msg
    assert "'gamma' = -1: must be ≥ 0" in msg
    assert "'epochs' = 1.5: expected an integer" in msg
    assert "'ratios'" in msg and "item 1" in msg
    assert "'interactive' = 'yes': expected True or False" in msg


def test_data_root_required_only_for_real_datasets(tmp_path):
    with pytest.raises(P.ParameterError, match="'data_root' = '': is empty"):
        P.check(dict(GOOD, dataset="cifar10"), SPEC)
    with pytest.raises(P.ParameterError, match="does not exist"):
        P.check(dict(GOOD, dataset="cifar10", data_root=str(tmp_path / "missing")), SPEC)
    P.check(dict(GOOD, dataset="cifar10", data_root=str(tmp_path)), SPEC)


def test_unknown_parameter_from_papermill_is_an_error():
    namespace = dict(GOOD, gama=5, json=json, helper=len, _private=1, In=[], Out={})
    with pytest.raises(P.ParameterError, match="'gama' is unknown"):
        P.from_namespace(namespace, SPEC)
    assert P.from_namespace(dict(GOOD, json=json), SPEC) == GOOD


def test_run_dir_is_keyed_by_what_changes_the_result(tmp_path):
    a = runs.params_key(GOOD)
    assert a == runs.params_key(dict(GOOD, run_dir="elsewhere", figures_dir="x", device="cuda"))
    assert a != runs.params_key(dict(GOOD, gamma=10.0))
    run_dir, fig_dir = runs.start_run("nb", dict(GOOD, run_dir=str(tmp_path / "r"), figures_dir=str(tmp_path / "f")))
    assert (run_dir / "params.yaml").exists() and fig_dir.is_dir()
    shared = runs.stage_dir(tmp_path / "runs" / "nb" / "abc", "nb", "pretrain", {"depth": 20})
    assert shared == tmp_path / "runs" / "nb" / "_shared" / f"pretrain-{runs.params_key({'depth': 20})}"


def test_results_need_points_with_accuracy_and_macs(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        runs.write_results(tmp_path, method="m", dataset="d", metrics={}, points=[{"label": "x"}], params={})
    path = runs.write_results(tmp_path, method="m", dataset="d", metrics={"acc": 1.0},
                              points=[{"label": "x", "accuracy": 90.0, "macs": 10}], params=GOOD)
    results = json.loads(path.read_text())
    assert results["environment"]["torch"] and results["points"][0]["macs"] == 10


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    runs.atomic_write_text(target, "first")

    def failing(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        runs._atomic_write(target, failing)
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
