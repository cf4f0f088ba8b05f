"""The trainer: determinism, resume after interruption, checkpoint errors, DDP on 2 CPU processes."""

import pandas as pd
import pytest
import torch

from dynn import runs, train
from dynn.data import get_dataset
from dynn.resnet_baseline.train import train_static


def _setup(seed=0):
    train.seed_everything(seed)
    data = get_dataset("digits", "train", limit=192)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return data, model, opt, sched


def _fit(run_dir, step_fn=train.classification_step):
    data, model, opt, sched = _setup()
    history = train.fit(
        model,
        step_fn,
        data,
        train.Stage("s", run_dir, seed=7, progress=False),
        train.Schedule(opt, epochs=3, batch_size=32, scheduler=sched),
    )
    return model, history


def test_same_seed_same_weights(tmp_path):
    a, _ = _fit(tmp_path / "a")
    b, _ = _fit(tmp_path / "b")
    assert train.weights_digest(a) == train.weights_digest(b)


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
    assert train.weights_digest(resumed) == train.weights_digest(reference)
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
    with pytest.raises(train.CheckpointError, match="does not match this model"):
        train.load_checkpoint(tmp_path / "s.ckpt", other)


def test_resolve_device():
    assert train.resolve_device("cpu").type == "cpu"
    assert train.resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available on this machine; allowed here: auto, cpu"):
            train.resolve_device("cuda:1")


class Counter:
    """Method state kept across a resume through fit(state=...)."""

    def __init__(self):
        self.steps = 0

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_method_state_is_saved_in_the_checkpoint_and_restored_on_resume(tmp_path):
    counter = Counter()

    def counting_step(model, batch):
        counter.steps += 1
        if counter.steps == 10:
            raise KeyboardInterrupt
        return train.classification_step(model, batch)

    data, model, opt, sched = _setup()
    with pytest.raises(KeyboardInterrupt):
        train.fit(
            model,
            counting_step,
            data,
            train.Stage("s", tmp_path, progress=False),
            train.Schedule(opt, epochs=3, batch_size=32),
            state={"counter": counter},
        )
    resumed = Counter()  # a fresh object, as in a new kernel
    data, model, opt, sched = _setup()
    train.fit(
        model,
        train.classification_step,
        data,
        train.Stage("s", tmp_path, progress=False),
        train.Schedule(opt, epochs=3, batch_size=32),
        state={"counter": resumed},
    )
    assert resumed.steps == 6  # the count at the end of epoch 1, restored from the checkpoint


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_same_weights_on_every_rank(tmp_path):
    stage = dict(
        model="cifar_resnet8",
        base_width=4,
        dataset="digits",
        resolution=8,
        train_limit=128,
        epochs=2,
        batch_size=16,
        lr=0.05,
        weight_decay=0.0,
        seed=0,
    )
    digests = train.run_elastic(runs.stage_entry, 2, train_static, str(tmp_path), "cpu", stage)
    assert sorted(digests) == [0, 1]
    assert digests[0] == pytest.approx(digests[1], rel=1e-6)
    model = train_static(run_dir=str(tmp_path), device="cpu", **stage)  # loads the finished stage
    assert train.weights_digest(model) == pytest.approx(digests[0], rel=1e-6)
    # rank-0 only: one metrics file with one row per epoch
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 2


def test_a_stage_records_what_it_computes_from_and_refuses_a_checkpoint_of_other_arguments(tmp_path):
    def stage_function(*, run_dir, device="cpu", lr, seed=3, progress=False):
        return train.Stage.of("s", locals())

    stage = stage_function(run_dir=str(tmp_path), lr=0.1)
    assert stage.params == {"lr": 0.1, "seed": 3}  # not run_dir, device or progress
    assert (stage.seed, stage.progress, stage.checkpoint) == (3, False, tmp_path / "s.ckpt")
    assert stage.finished() is None
    stage.save(result=[1, 2])
    assert stage_function(run_dir=str(tmp_path), lr=0.1, device="meta").finished()["result"] == [1, 2]
    with pytest.raises(train.CheckpointError, match="lr: 0.1 there, 0.2 now"):
        stage_function(run_dir=str(tmp_path), lr=0.2).finished()
