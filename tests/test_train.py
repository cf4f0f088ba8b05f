"""The trainer: determinism, resume after interruption, checkpoint errors, DDP on 2 CPU processes."""
import pandas as pd
import pytest
import torch

from dynn import baseline, train
from dynn.data import get_dataset


def _setup(seed=0):
    train.seed_everything(seed)
    data = torch.utils.data.Subset(get_dataset("digits", "train", seed=0), range(192))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return data, model, opt, sched


def _fit(run_dir, step_fn=train.classification_step):
    data, model, opt, sched = _setup()
    history = train.fit(model, step_fn, data, epochs=3, optimizer=opt, scheduler=sched, batch_size=32,
                        run_dir=run_dir, stage="s", seed=7, progress=False)
    return model, history


def test_same_seed_same_weights(tmp_path):
    a, _ = _fit(tmp_path / "a")
    b, _ = _fit(tmp_path / "b")
    assert baseline.weights_digest(a) == baseline.weights_digest(b)


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    reference, ref_history = _fit(tmp_path / "ref")
    calls = {"n": 0}

    def crashing_step(model, batch):
        calls["n"] += 1
        if calls["n"] == 10:  # in the middle of the second epoch (6 batches per epoch)
            raise KeyboardInterrupt
        return train.classification_step(model, batch)

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "run", crashing_step)
    state = torch.load(tmp_path / "run" / "s.ckpt", weights_only=False)
    assert state["epoch"] == 1
    resumed, history = _fit(tmp_path / "run")
    assert baseline.weights_digest(resumed) == baseline.weights_digest(reference)
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in ref_history]
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3] and (metrics["stage"] == "s").all()


def test_finished_stage_is_not_retrained(tmp_path):
    _fit(tmp_path)
    def never(model, batch):
        raise AssertionError("a finished stage must not train again")
    _, history = _fit(tmp_path, never)
    assert len(history) == 3


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    _fit(tmp_path)
    other = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="does not match this model"):
        train.load_checkpoint(tmp_path / "s.ckpt", other)


def test_resolve_device():
    assert train.resolve_device("cpu").type == "cpu"
    assert train.resolve_device("auto").type in {"cpu", "cuda", "mps"}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_same_weights_on_every_rank(tmp_path):
    config = dict(model="cifar_resnet8", num_classes=10, model_kwargs={"in_channels": 1, "base_width": 4},
                  dataset="digits", resolution=8, train_limit=128, epochs=2, batch_size=16, lr=0.05,
                  weight_decay=0.0, seed=0, device="cpu", progress=False)
    digests = train.run_elastic(baseline.train_classifier, 2, config, str(tmp_path), "ddp")
    assert sorted(digests) == [0, 1]
    assert digests[0] == pytest.approx(digests[1], rel=1e-6)
    model = baseline.build_classifier(config)
    train.load_checkpoint(tmp_path / "ddp.ckpt", model)
    assert baseline.weights_digest(model) == pytest.approx(digests[0], rel=1e-6)
    # rank-0 only: one metrics file with one row per epoch
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 2
