"""The notebook contract: parameter errors, the Run object, keyed stages, no silent reuse."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from dynn import params as P
from dynn import runs, train

SPEC = {
    "dataset": P.Choice(["mnist5k", "cifar10"]),
    "data_root": P.DataRoot(),
    "download": P.Flag(),
    "gamma": P.Number(min=0),
    "epochs": P.Number(min=1, integer=True),
    "ratios": P.ListOf(P.Number(min=0, max=1)),
    "interactive": P.Flag(),
    "device": P.Device(),
    "seed": P.Number(min=0, integer=True),
    "run_dir": P.Text(),
    "figures_dir": P.Text(),
}
GOOD = dict(
    dataset="mnist5k",
    data_root="",
    download=False,
    gamma=5.0,
    epochs=2,
    ratios=[0.5, 0.75],
    interactive=False,
    device="cpu",
    seed=0,
    run_dir="",
    figures_dir="",
)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """An empty workbook checkout as the current directory (runs resolve against it)."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where JupyterLab and papermill start kernels
    return tmp_path


def test_valid_parameters_pass():
    assert P.check(dict(GOOD), SPEC) == GOOD


def test_all_problems_are_reported_at_once_with_what_is_allowed():
    bad = dict(GOOD, dataset="imagenet", gamma=-1, epochs=1.5, ratios=[0.5, 2], interactive="yes", device="gpu")
    with pytest.raises(P.ParameterError) as err:
        P.check(bad, SPEC)
    msg = str(err.value)
    assert "'dataset' = 'imagenet': allowed: 'mnist5k', 'cifar10'" in msg
    assert "'gamma' = -1: must be ≥ 0" in msg
    assert "'epochs' = 1.5: expected an integer" in msg
    assert "'ratios'" in msg and "item 1" in msg
    assert "'interactive' = 'yes': expected True or False" in msg
    assert "'device' = 'gpu': allowed: 'auto', 'cpu', 'cuda', 'cuda:N'" in msg


def test_data_root_layout_is_checked_at_validation_with_the_remedy(tmp_path):
    with pytest.raises(P.ParameterError) as err:
        P.check(dict(GOOD, dataset="cifar10"), SPEC)
    assert "'data_root'" in str(err.value) and "cifar-10-batches-py" in str(err.value)
    assert "download" in str(err.value)
    with pytest.raises(P.ParameterError, match="cifar-10-batches-py"):
        P.check(dict(GOOD, dataset="cifar10", data_root=str(tmp_path)), SPEC)  # exists, wrong layout
    (tmp_path / "cifar-10-batches-py").mkdir()
    for name in (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    ):
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(b"")
    P.check(dict(GOOD, dataset="cifar10", data_root=str(tmp_path)), SPEC)
    P.check(dict(GOOD, dataset="cifar10", data_root=str(tmp_path / "new"), download=True), SPEC)


def test_unknown_parameter_from_papermill_is_an_error():
    namespace = dict(GOOD, gama=5, json=json, helper=len, _private=1, In=[], Out={})
    with pytest.raises(P.ParameterError, match="'gama' is unknown"):
        P.from_namespace(namespace, SPEC)
    assert P.from_namespace(dict(GOOD, json=json), SPEC) == GOOD


def test_validation_imports_nothing_heavy():
    """A typo must be reported within seconds: dynn.params and the method specs load no torch."""
    code = (
        "import sys, importlib, dynn.params\n"
        "for m in ['blockdrop', 'sdpoint', 'adaskip', 'dynamic_routing', 'slimmable', 'resnet_baseline']:\n"
        "    importlib.import_module(f'dynn.{m}.parameters')\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'seaborn', 'matplotlib', 'pandas') if m in sys.modules)\n"
        "print(heavy)\nassert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout


@pytest.mark.parametrize("notebook", ["blockdrop", "sdpoint", "slimmable", "resnet_baseline"])
def test_classification_notebooks_refuse_other_tasks_datasets(notebook):
    import importlib

    spec = importlib.import_module(f"dynn.{notebook}.parameters").SPEC
    for other in ("digit_scenes", "moving_digits"):
        assert spec["dataset"].problem(other), f"{notebook} accepts the non-classification dataset {other}"
    assert spec["dataset"].problem("mnist5k") is None


def test_run_dir_is_keyed_by_what_changes_the_result():
    a = runs.params_key(GOOD)
    assert a == runs.params_key(dict(GOOD, run_dir="elsewhere", figures_dir="x", device="cuda"))
    assert a != runs.params_key(dict(GOOD, gamma=10.0))


def test_ad_hoc_run_writes_figures_into_its_run_dir_of_the_current_checkout(checkout):
    run = runs.start("nb", dict(GOOD))
    assert run.dir.parent == checkout / "runs" / "nb"
    assert run.figures == run.dir / "figures"
    assert not (checkout / "figures").exists()  # the committed gallery is the report runner's alone
    assert yaml.safe_load((run.dir / "params.yaml").read_text())["gamma"] == 5.0


def test_run_dir_of_other_parameters_is_refused_naming_them(checkout):
    first = runs.start("nb", dict(GOOD, gamma=1.0))
    runs.write_results(
        first.dir,
        method="nb",
        dataset="mnist5k",
        metrics={"m": 1},
        params=first.params,
        points=[{"label": "x", "accuracy": 90.0, "macs": 10, "role": "method", "series": "s", "selection": "fixed"}],
    )
    before = (first.dir / "results.json").read_text()
    with pytest.raises(P.ParameterError) as err:
        runs.start("nb", dict(GOOD, gamma=5.0, run_dir=str(first.dir)))
    assert "'run_dir'" in str(err.value) and "gamma: 1.0 there, 5.0 now" in str(err.value)
    assert (first.dir / "results.json").read_text() == before  # nothing overwritten


def test_unavailable_device_fails_before_any_directory(checkout):
    with pytest.raises(P.ParameterError, match="'device' = 'mps'.*allowed here: auto, cpu"):
        runs.start("nb", dict(GOOD, device="mps"))
    assert not (checkout / "runs").exists()


def _tiny_stage(*, run_dir, device, epochs, seed, lr=0.1):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    data = torch.utils.data.TensorDataset(
        torch.randn(32, 4, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 2
    )
    train.fit(
        model,
        train.classification_step,
        data,
        train.Stage.of("_tiny_stage", dict(run_dir=run_dir, device=device, epochs=epochs, seed=seed, lr=lr)),
        train.Schedule(torch.optim.SGD(model.parameters(), lr=lr), epochs=epochs, batch_size=8),
    )
    return model


def test_stages_are_keyed_by_their_arguments_and_reuse_says_so(checkout, capsys):
    run = runs.start("nb", dict(GOOD))
    a = run.stage(_tiny_stage, epochs=2, seed=0)
    assert "epoch 2/2" in capsys.readouterr().out  # text progress, one line per epoch
    again = run.stage(_tiny_stage, epochs=2, seed=0)
    assert "finished earlier" in capsys.readouterr().out
    assert torch.equal(a.weight, again.weight)
    other = run.stage_dir(_tiny_stage, epochs=2, seed=0, lr=0.5)
    assert other != run.stages["_tiny_stage"]
    assert run.stage_dir(_tiny_stage, epochs=2, seed=0, device="cuda") == run.stages["_tiny_stage"]
    assert run.checkpoint("_tiny_stage").endswith("_tiny_stage.ckpt")


def test_checkpoint_of_other_parameters_or_code_is_refused(tmp_path):
    _tiny_stage(run_dir=str(tmp_path), device="cpu", epochs=1, seed=0)
    with pytest.raises(train.CheckpointError, match="other parameters.*lr: 0.1 there, 0.5 now"):
        _tiny_stage(run_dir=str(tmp_path), device="cpu", epochs=1, seed=0, lr=0.5)
    state = torch.load(tmp_path / "_tiny_stage.ckpt", weights_only=False)
    state["code_version"] = "0.0.1"
    torch.save(state, tmp_path / "_tiny_stage.ckpt")
    with pytest.raises(train.CheckpointError, match="written by dynn 0.0.1"):
        _tiny_stage(run_dir=str(tmp_path), device="cpu", epochs=2, seed=0)


def test_truncated_checkpoint_names_the_file_and_the_remedy(tmp_path):
    _tiny_stage(run_dir=str(tmp_path), device="cpu", epochs=1, seed=0)
    path = tmp_path / "_tiny_stage.ckpt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(train.CheckpointError) as err:
        _tiny_stage(run_dir=str(tmp_path), device="cpu", epochs=2, seed=0)
    assert str(path) in str(err.value) and "Delete that file" in str(err.value)


def test_results_points_carry_role_series_and_selection(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        runs.write_results(
            tmp_path,
            method="m",
            dataset="d",
            metrics={},
            params={},
            points=[{"label": "x", "accuracy": 1.0, "macs": 1}],
        )
    with pytest.raises(ValueError, match="role 'best'"):
        runs.write_results(
            tmp_path,
            method="m",
            dataset="d",
            metrics={},
            params={},
            points=[{"label": "x", "accuracy": 1.0, "macs": 1, "role": "best", "series": "s", "selection": "fixed"}],
        )
    path = runs.write_results(
        tmp_path,
        method="m",
        dataset="d",
        metrics={"acc": 1.0},
        params=GOOD,
        task="video",
        points=[{"label": "x", "accuracy": 90.0, "macs": 10, "role": "baseline", "series": "s", "selection": "fixed"}],
    )
    results = json.loads(path.read_text())
    assert results["points"][0]["task"] == "video" and results["claims"] == []
    assert results["environment"]["code_version"]


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
