"""Cost-adjustable inference: BN recalibration, the per-instance accuracy/cost table, latency.

Each SDPoint instance sees feature maps of different sizes (and, after pooling, different
statistics) than the mixture the network was trained on, so before evaluating an instance
the paper recomputes the BatchNorm statistics for it on training data (train mode, no
gradients). We do it as a true average over ``bn_batches`` fixed training batches with
the foundation's :func:`dynn.evaluate.recalibrate_bn`. The official code instead runs a
plain ``model.train()`` pass: the running statistics are *not* reset between instances and
are a momentum-0.1 moving average, so each instance's numbers depend on the instances
evaluated before it. That behaviour is one of the official bugs the spec asks to
reproduce under ``legacy_official``, which is the only reason
:func:`recalibrate_bn_official` exists here.

Accuracy goes through :func:`dynn.evaluate.evaluate_classifier` with ``forward`` = the
instance (:meth:`SDPointNet.run`), latency through :func:`dynn.flops.compare_latency`
(all instances timed interleaved in one call, the batch that really ran recorded).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset

from dynn.evaluate import calibration_batches, evaluate_classifier, recalibrate_bn
from dynn.flops import compare_latency, format_macs
from dynn.sdpoint.model import Config, SDPointNet, with_points
from dynn.sdpoint.parameters import BN_MODES


# ---------------------------------------------------------------- data
def in_memory(data: Dataset, *, max_bytes: int = 2**30) -> Dataset:
    """The split as one :class:`TensorDataset` when it fits in ``max_bytes`` (so that the
    2N+3 evaluations do not decode every image again), else the split itself (ImageNet)."""
    if isinstance(data, TensorDataset) or len(data) == 0:
        return data
    image = data[0][0]
    if len(data) * image.numel() * image.element_size() > max_bytes:
        return data
    xs, ys = zip(*(data[i] for i in range(len(data))))
    return TensorDataset(torch.stack(xs), torch.as_tensor(ys))


def example_batch(data: Dataset, n: int) -> torch.Tensor:
    """The first ``n`` images of a split (for latency measurements and the explorer)."""
    return torch.stack([data[i][0] for i in range(min(n, len(data)))])


def input_shape_of(data: Dataset) -> tuple[int, ...]:
    return tuple(data[0][0].shape)


# ---------------------------------------------------------------- BN statistics
def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BN buffer (running mean/var, batch counter) to restore later."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def restore_bn_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state, strict=False)


@torch.no_grad()
def recalibrate_bn_official(model: SDPointNet, config: Sequence[float], batches, *, device="cpu") -> SDPointNet:
    """The official evaluation loop's statistics: no reset, momentum 0.1 (legacy only)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.1
    model.train()
    try:
        for x in batches:
            model.run(x.to(device), config)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
    return model.eval()


def recalibrate(
    model: SDPointNet, config: Sequence[float], batches, *, mode: str = "average", device="cpu"
) -> SDPointNet:
    """BN statistics of ``config`` from ``batches``: a true average, or the official way."""
    if mode not in BN_MODES:
        raise ValueError(f"BN recalibration mode must be one of {BN_MODES}, got {mode!r}")
    if mode == "official":
        return recalibrate_bn_official(model, config, batches, device=device)
    return recalibrate_bn(model, batches, device=device, forward=partial(model.run, config=tuple(config)))


# ---------------------------------------------------------------- accuracy
def configuration_accuracy(
    model: SDPointNet,
    config: Sequence[float],
    splits: dict[str, Dataset],
    *,
    calibration: Sequence[torch.Tensor] | None = None,
    bn_mode: str = "average",
    restore: bool = True,
    batch_size: int = 256,
    device="cpu",
) -> dict[str, dict]:
    """Accuracy of one configuration on each split, after BN recalibration when
    ``calibration`` is given (the same statistics for every split).

    With ``restore`` the trained BN statistics are put back afterwards, so calls do not
    influence each other (the official chain of instances uses ``restore=False``).
    """
    config = model.check_config(config)
    saved = bn_state(model) if (calibration is not None and restore) else None
    try:
        if calibration is not None:
            recalibrate(model, config, calibration, mode=bn_mode, device=device)
        forward = partial(model.run, config=config)
        return {
            name: evaluate_classifier(model, data, batch_size=batch_size, device=device, forward=forward)
            for name, data in splits.items()
        }
    finally:
        if saved is not None:
            restore_bn_state(model, saved)


def evaluate_instances(
    model: SDPointNet,
    splits: dict[str, Dataset],
    *,
    calibration: Sequence[torch.Tensor] | None = None,
    bn_mode: str = "average",
    batch_size: int = 256,
    device="cpu",
    full_only: bool = False,
) -> list[dict]:
    """Accuracy and MACs of every instance (official order), with or without recalibration.

    Columns: point, ratio, macs, macs_fraction, ``<split>_top1`` / ``<split>_top5`` per
    split and ``test_correct`` (per-image correctness on the test split, for paired
    comparisons). In ``official`` mode the statistics carry over from one instance to the
    next, in the official order, exactly as the official ``--evaluate`` loop leaves them;
    the trained statistics are restored at the end either way. ``full_only``: only the
    instance without downsampling.
    """
    saved = bn_state(model)
    input_shape = input_shape_of(next(iter(splits.values())))
    full = model.macs(model.full_config(), input_shape)
    rows = []
    try:
        for point, ratio in model.instances()[:1] if full_only else model.instances():
            config = model.instance_config(point, ratio)
            acc = configuration_accuracy(
                model,
                config,
                splits,
                calibration=calibration,
                bn_mode=bn_mode,
                restore=bn_mode != "official",
                batch_size=batch_size,
                device=device,
            )
            macs = model.macs(config, input_shape)
            name, value = "none" if point is None else str(point), 1.0 if ratio is None else ratio
            row = {
                "point": name,
                "ratio": value,
                "label": instance_label(name, value),
                "macs": macs,
                "macs_fraction": macs / full,
            }
            for name, result in acc.items():
                row.update({f"{name}_top1": result["top1"], f"{name}_top5": result["top5"]})
            if "test" in acc:
                row["test_correct"] = acc["test"]["correct"]
            rows.append(row)
    finally:
        restore_bn_state(model, saved)
    return rows


def instance_table(
    *,
    run_dir: str,
    device: str,
    checkpoint: str,
    ratios: list,
    legacy_official: bool,
    dataset: str,
    data_root: str,
    resolution: int,
    train_limit: int,
    val_limit: int,
    test_limit: int,
    bn_batches: int,
    bn_batch_size: int,
    seed: int,
    recalibrated_splits: list = ("val", "test"),
    plain_splits: list = ("val", "test"),
    plain_instances: str = "all",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Every instance of a trained network, with and without BN recalibration
    (``recalibrated`` column), on the splits asked for: with recalibration on
    ``recalibrated_splits``, with the trained statistics on ``plain_splits`` and for
    ``plain_instances`` = ``"all"`` instances or only the ``"full"`` network (evaluation
    is most of a small run's time, so a run asks only for what it reports).

    A keyed stage like training (``run.stage(instance_table, checkpoint=..., ...)``), so a
    sweep over the agent's parameters computes the table of a shared network once: it is
    saved as ``instance_table.ckpt`` with its arguments, the code version and a digest of
    the network's weights, and reused only when all three agree (a retrained network or
    other code is an error naming the file, never a stale table); ``instances.csv`` is a
    copy to read. The network is evaluated at the points given by ``ratios`` /
    ``legacy_official``, which is how the plainly trained baseline is scored at the SDPoint
    model's instances.
    """
    if plain_instances not in ("all", "full"):
        raise ValueError(f"plain_instances must be 'all' or 'full', got {plain_instances!r}")
    arguments = {k: (list(v) if isinstance(v, tuple) else v) for k, v in locals().items()}
    from dynn.runs import atomic_write_text
    from dynn.sdpoint.train import load_data, load_model
    from dynn.train import Stage, weights_digest

    network = load_model(checkpoint)
    # the evaluated network, not just its path
    stage = Stage.of("instance_table", arguments).recording(weights_digest=weights_digest(network))
    saved = stage.finished()
    if saved is not None:
        return pd.DataFrame(saved["state"]["table"])
    device = torch.device(device)
    model = with_points(network, ratios=ratios, legacy_official=legacy_official).to(device)
    data = dict(dataset=dataset, data_root=data_root, resolution=resolution)
    limits = {"val": val_limit, "test": test_limit}
    splits = {
        name: in_memory(load_data(split=name, limit=limits[name], **data))
        for name in sorted(set(recalibrated_splits) | set(plain_splits))
    }
    calibration = calibration_batches(
        load_data(split="train", limit=train_limit, **data), batches=bn_batches, batch_size=bn_batch_size, seed=seed
    )
    bn_mode = "official" if legacy_official else "average"
    rows = []
    for recal, names in ((False, plain_splits), (True, recalibrated_splits)):
        if not names:
            continue
        rows += [
            dict(row, recalibrated=recal)
            for row in evaluate_instances(
                model,
                {name: splits[name] for name in names},
                calibration=calibration if recal else None,
                bn_mode=bn_mode,
                batch_size=batch_size,
                device=device,
                full_only=not recal and plain_instances == "full",
            )
        ]
    table = pd.DataFrame(rows)
    stage.save(state={"table": table.to_dict("list")})
    atomic_write_text(Path(run_dir) / "instances.csv", table.drop(columns="test_correct").to_csv(index=False))
    return table


def instance_label(point: str, ratio: float) -> str:
    """``full network``, ``stem r=0.5``, ``block 3 r=0.75``: one name per instance."""
    return "full network" if point == "none" else f"{'block ' if point != 'stem' else ''}{point} r={ratio:g}"


def instance_configs(model: SDPointNet) -> dict[str, Config]:
    """Every instance's configuration by its label, in the official order."""
    return {
        instance_label("none" if p is None else str(p), 1.0 if r is None else r): model.instance_config(p, r)
        for p, r in model.instances()
    }


def summary_table(instances: pd.DataFrame) -> pd.DataFrame:
    """One row per instance: the SDPoint model recalibrated, beside its no-recalibration
    accuracy and the baseline's (test top-1), with MACs and latency."""

    def top1(model: str, recalibrated: bool) -> pd.Series:
        rows = instances[(instances.model == model) & (instances.recalibrated == recalibrated)]
        return rows.set_index("label")["test_top1"]

    table = instances[(instances.model == "SDPoint") & instances.recalibrated].drop(columns=["model", "recalibrated"])
    table = table.set_index("label", drop=False)
    table["test_top1_no_recal"] = top1("SDPoint", False)
    table["baseline_test_top1"] = top1("baseline", True)
    table["baseline_test_top1_no_recal"] = top1("baseline", False)
    table["MACs"] = [format_macs(m) for m in table["macs"]]
    return table.reset_index(drop=True)


def summary_metrics(table: pd.DataFrame) -> dict:
    """Headline numbers: full cost and the cheapest instance, with and without
    recalibration, against the baseline; latency ratios at both batch sizes."""
    full = table[table.point == "none"].iloc[0]
    cheapest = table.loc[table["macs"].idxmin()]
    return {
        "full_cost_top1_sdpoint": full["test_top1"],
        "full_cost_top1_baseline": full["baseline_test_top1"],
        "full_cost_top1_sdpoint_no_recal": full["test_top1_no_recal"],
        "full_cost_top1_baseline_no_recal": full["baseline_test_top1_no_recal"],
        "cheapest_instance": cheapest["label"],
        "cheapest_macs_fraction": cheapest["macs_fraction"],
        "cheapest_top1_recal": cheapest["test_top1"],
        "cheapest_top1_no_recal": cheapest["test_top1_no_recal"],
        "cheapest_baseline_top1_recal": cheapest["baseline_test_top1"],
        "cheapest_latency_ratio_b1": cheapest["latency_ms"] / full["latency_ms"],
        "cheapest_latency_ratio_batched": cheapest["latency_batched_ms"] / full["latency_batched_ms"],
        "latency_batch": int(full["latency_batch"]),
        "full_macs": int(full["macs"]),
    }


def validation_choice(table: pd.DataFrame) -> pd.DataFrame:
    """The instances worth deploying, chosen on validation data only: the validation
    accuracy–MACs Pareto front (no other instance is both cheaper and more accurate on
    validation). Their test accuracy is what gets reported."""
    from dynn.plots import pareto_front

    return table.iloc[pareto_front(table["macs"].to_numpy(), table["val_top1"].to_numpy())]


# ---------------------------------------------------------------- the agent's configurations on test
def agent_table(
    model: SDPointNet,
    search,
    test_data: Dataset,
    *,
    calibration: Sequence[torch.Tensor],
    bn_mode: str = "average",
    top: int = 4,
    device="cpu",
) -> pd.DataFrame:
    """Test accuracy of the agent's candidate configurations, all chosen on validation: the
    ``top`` highest-reward ones of the validation Pareto front, the best seen and the
    final policy's greedy one."""
    from dynn.plots import pareto_front

    explored = pd.DataFrame([vars(e) for e in search.explored])
    front = explored.iloc[pareto_front(explored["macs"], explored["accuracy"])]
    best = search.best()
    candidates = {tuple(c) for c in front.sort_values("reward", ascending=False)["config"][:top]}
    candidates |= {best.config} | ({search.greedy.config} if search.greedy else set())
    evaluated = {e.config: e for e in search.explored}
    rows = []
    for config in sorted(candidates):
        ev = evaluated[config]
        acc = configuration_accuracy(
            model, config, {"test": test_data}, calibration=calibration, bn_mode=bn_mode, device=device
        )["test"]
        rows.append(
            {
                "config": config,
                "val_top1": ev.accuracy,
                "reward": ev.reward,
                "test_top1": acc["top1"],
                "test_top5": acc["top5"],
                "test_correct": acc["correct"],
                "macs": ev.macs,
                "macs_fraction": ev.macs_fraction,
                "best": config == best.config,
                "greedy": search.greedy is not None and config == search.greedy.config,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- deployment
class DeployedInstance(nn.Module):
    """One instance as the network one would ship: ``forward(images)`` runs ``config`` on
    the backbone, whose BN statistics were recalibrated for that instance.

    Holds the plain backbone (picklable) and rebuilds the SDPoint wrapper on first use, so
    ``torch.save`` of the whole module works (``Run.save_deployed``)."""

    def __init__(self, backbone: nn.Module, config: Sequence[float], *, ratios, legacy_official: bool = False):
        super().__init__()
        self.backbone = backbone
        self.config = tuple(float(r) for r in config)
        self.ratios = tuple(ratios)
        self.legacy_official = legacy_official

    def _network(self) -> SDPointNet:
        if self.__dict__.get("_net") is None:
            self.__dict__["_net"] = SDPointNet(
                self.backbone, self.ratios, sampling="none", legacy_official=self.legacy_official
            )
        return self.__dict__["_net"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._network().run(x, self.config)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)
        return state


def deployable(
    model: SDPointNet, config: Sequence[float], calibration, *, bn_mode: str = "average", device="cpu"
) -> DeployedInstance:
    """A copy of ``model`` recalibrated for ``config`` (the trained model is left alone), on the CPU."""
    import copy

    # a fresh wrapper on a copied backbone: the wrapper's view holds closures over its own backbone
    network = SDPointNet(
        copy.deepcopy(model.backbone), model.ratios, sampling="none", legacy_official=model.legacy_official
    )
    recalibrate(network, config, calibration, mode=bn_mode, device=device)
    return DeployedInstance(
        network.backbone.cpu().eval(), config, ratios=model.ratios, legacy_official=model.legacy_official
    ).eval()


def save_deployed_points(
    run,
    model: SDPointNet,
    baseline: SDPointNet,
    instances: pd.DataFrame,
    images: torch.Tensor,
    *,
    calibration,
    bn_mode: str = "average",
    device="cpu",
) -> dict[str, str]:
    """Save what the run would ship (``run.save_deployed``): every SDPoint instance on the
    validation front, recalibrated for itself, and the baseline network as trained.
    Returns {result-point label: deployed file}, for :func:`result_points`."""
    import copy

    configs = instance_configs(model)
    sdpoint = instances[(instances.model == "SDPoint") & instances.recalibrated]
    images = images[:64].cpu()
    out = {}
    for _, r in validation_choice(sdpoint).iterrows():
        label = f"{r['label']} (chosen on validation)"
        module = deployable(model, configs[r["label"]], calibration, bn_mode=bn_mode, device=device)
        out[label] = run.save_deployed(f"SDPoint {label}", module, images)
    out["baseline full network"] = run.save_deployed(
        "baseline full network", copy.deepcopy(baseline.backbone).cpu().eval(), images
    )
    return out


# ---------------------------------------------------------------- latency
def latency_table(
    model: SDPointNet,
    configs: dict[str, Config],
    images: torch.Tensor,
    *,
    batch: int,
    seconds: float = 0.25,
    rounds: int = 4,
) -> pd.DataFrame:
    """Latency of each named configuration at batch 1 and at ``batch`` (eval mode), all
    timed interleaved in one :func:`dynn.flops.compare_latency` call, so that ratios between
    rows are fair on a loaded machine; ``seconds`` of timing per row, split over ``rounds``.
    ``latency_batch`` is the batch that really ran (fewer images than ``batch`` may exist).
    """
    model.eval()
    one, many = images[:1], images[:batch]
    calls = {}
    for name, config in configs.items():
        forward = partial(model.run, config=model.check_config(config))
        calls[(name, "one")] = (forward, (one,))
        calls[(name, "batch")] = (forward, (many,))
    rows = compare_latency(calls, rounds=rounds, min_run_time=seconds / rounds)
    by_key = {row["name"]: row for row in rows}
    out = []
    for name in configs:
        b1, bn = by_key[(name, "one")], by_key[(name, "batch")]
        out.append(
            {
                "name": name,
                "latency_ms": b1["median_ms"],
                "latency_batched_ms": bn["median_ms"],
                "latency_batch": bn["batch"],
                "latency_spread_ms": b1["spread_ms"],
                "latency_batched_spread_ms": bn["spread_ms"],
                "threads": b1["threads"],
                "latency_device": b1["device"],
            }
        )
    return pd.DataFrame(out)


def with_agent_latency(
    agent_points: pd.DataFrame, model: SDPointNet, images: torch.Tensor, *, batch: int, seconds: float = 0.25
) -> pd.DataFrame:
    """The agent's configurations timed in one call beside the full network (its rows get
    ``latency_ratio_b1`` / ``latency_ratio_batched``: latency relative to the full network)."""
    configs = {
        "full network": model.full_config(),
        **{f"agent {i}": tuple(c) for i, c in enumerate(agent_points["config"])},
    }
    latency = latency_table(model, configs, images, batch=batch, seconds=seconds).set_index("name")
    full = latency.loc["full network"]
    timed = latency.drop(index="full network").reset_index(drop=True)
    out = pd.concat(
        [agent_points.reset_index(drop=True), timed[["latency_ms", "latency_batched_ms", "latency_batch"]]], axis=1
    )
    out["latency_ratio_b1"] = out["latency_ms"] / full["latency_ms"]
    out["latency_ratio_batched"] = out["latency_batched_ms"] / full["latency_batched_ms"]
    return out


def agent_metrics(agent_points: pd.DataFrame, table: pd.DataFrame, search) -> dict:
    """The agent's best (on validation) configuration against the single-point instance
    closest to it in MACs (test top-1 of both)."""
    best = agent_points[agent_points.best].iloc[0]
    singles = table[table.point != "none"]
    rival = singles.loc[(singles["macs"] - best["macs"]).abs().idxmin()]
    return {
        "agent_best_top1": best["test_top1"],
        "agent_best_val_top1": best["val_top1"],
        "agent_best_macs_fraction": best["macs_fraction"],
        "agent_best_config": list(best["config"]),
        "agent_best_latency_ratio_batched": best["latency_ratio_batched"],
        "agent_distinct_configs": len(search.explored),
        "single_point_rival": rival["label"],
        "single_point_rival_top1": rival["test_top1"],
        "single_point_rival_macs_fraction": rival["macs_fraction"],
    }


# ---------------------------------------------------------------- results.json
def _point(row, **fields) -> dict:
    out = {
        "accuracy": float(row["test_top1"]),
        "top5": float(row["test_top5"]),
        "macs": int(row["macs"]),
        "macs_fraction": float(row["macs_fraction"]),
    }
    if "val_top1" in row and not pd.isna(row["val_top1"]):
        out["val_accuracy"] = float(row["val_top1"])
    for key in ("latency_ms", "latency_batched_ms"):
        if key in row:
            out[key] = float(row[key])
    if "latency_ms" in row:
        out["latency_batch"] = 1
        out["latency_batched_batch"] = int(row["latency_batch"])
    return {**out, **fields}


def result_points(
    instances: pd.DataFrame, agent_points: pd.DataFrame, *, agent: str, deployed: dict | None = None
) -> list[dict]:
    """Every point of ``results.json`` with its role, series and selection:

    - SDPoint instances, BN recalibrated: ``method`` / ``sweep`` (every instance shown), and
      again those on the validation front as ``method`` / ``validation`` (the deployed ones);
    - the SDPoint network without downsampling: ``reference`` / ``fixed``;
    - the plainly trained baseline at every instance (recalibrated): ``baseline``;
    - both models without recalibration: ``ablation`` / ``sweep``;
    - the agent's configurations: ``method`` / ``validation``.

    ``deployed`` ({label: file} from :func:`save_deployed_points`) fills the ``deployed``
    field of the points it names.
    """
    points = _result_points(instances, agent_points, agent=agent)
    for point in points:
        if deployed and point["label"] in deployed:
            point["deployed"] = deployed[point["label"]]
    return points


def _result_points(instances: pd.DataFrame, agent_points: pd.DataFrame, *, agent: str) -> list[dict]:
    points = []
    sdpoint = instances[(instances.model == "SDPoint") & instances.recalibrated]
    for _, r in sdpoint.iterrows():
        where = dict(point=r["point"], ratio=float(r["ratio"]))
        if r["point"] == "none":
            points.append(
                _point(
                    r,
                    label="SDPoint full network",
                    role="reference",
                    series="SDPoint full network",
                    selection="fixed",
                    **where,
                )
            )
        else:
            points.append(_point(r, label=r["label"], role="method", series="SDPoint", selection="sweep", **where))
    for _, r in validation_choice(sdpoint).iterrows():
        points.append(
            _point(
                r,
                label=f"{r['label']} (chosen on validation)",
                role="method",
                series="SDPoint (chosen on validation)",
                selection="validation",
                point=r["point"],
                ratio=float(r["ratio"]),
            )
        )
    plain = instances[(instances.model == "baseline") & ~instances.recalibrated & (instances.point == "none")]
    for _, r in plain.iterrows():  # the normally trained network, as trained
        points.append(
            _point(
                r,
                label="baseline full network",
                role="baseline",
                series="baseline",
                selection="fixed",
                point="none",
                ratio=1.0,
            )
        )
    baseline = instances[(instances.model == "baseline") & instances.recalibrated & (instances.point != "none")]
    for _, r in baseline.iterrows():
        points.append(
            _point(
                r,
                label=f"baseline {r['label']}",
                role="baseline",
                series="baseline at the SDPoint instances (BN recalibrated)",
                selection="sweep",
                point=r["point"],
                ratio=float(r["ratio"]),
            )
        )
    for name in ("SDPoint", "baseline"):
        rows = instances[(instances.model == name) & ~instances.recalibrated & (instances.point != "none")]
        for _, r in rows.iterrows():
            points.append(
                _point(
                    r,
                    label=f"{name} {r['label']}, no recalibration",
                    role="ablation",
                    series=f"{name} (no recalibration)",
                    selection="sweep",
                    point=r["point"],
                    ratio=float(r["ratio"]),
                )
            )
    for _, r in agent_points.iterrows():
        points.append(
            _point(
                r,
                label="agent " + " ".join(f"{x:g}" for x in r["config"]),
                role="method",
                series=f"agent ({agent})",
                selection="validation",
                config=list(r["config"]),
                best=bool(r["best"]),
                greedy=bool(r["greedy"]),
            )
        )
    return points
