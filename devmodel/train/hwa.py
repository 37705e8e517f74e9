"""Hardware-aware training loop: wrap, train (with checkpoints and progress), unwrap, evaluate.

``train_hwa(net, card, "device-000", data, TrainOptions(...), {"noise_scale": 3})`` starts from a
floating-point network
(as every seed does), trains it with the method of :mod:`devmodel.train.methods` and returns a plain
digital network to program; ``evaluate_hwa`` runs it on the analog simulator with the method's
crossbar configuration over time and programming trials.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel
from devmodel.sim.analog import convert, evaluate_over_time, replace_modules
from devmodel.sim.config import CrossbarConfig
from devmodel.sim.data import Split
from devmodel.sim.networks import one_thread
from devmodel.train.methods import HWALayer, Method, MethodOptions, TrainOptions, method_options
from devmodel.train.registry import METHODS


@dataclass
class HWAResult:
    net: nn.Module  # plain digital network with the trained weights
    method: Method
    history: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    seconds: float = 0.0


def wrap(net: nn.Module, method: Method) -> nn.Module:
    """A deep copy of ``net`` with every Linear/Conv2d replaced by an HWALayer."""
    return replace_modules(net, lambda m: HWALayer(m, method)
                           if isinstance(m, (nn.Linear, nn.Conv2d)) else None)


def unwrap(net: nn.Module) -> nn.Module:
    """The digital network the wrapped one programs (learned scales folded into the weights)."""
    return replace_modules(net, lambda m: m.to_digital() if isinstance(m, HWALayer) else None).eval()


def make_method(name: str, card: DeviceModel, opts: TrainOptions,
                options: MethodOptions | dict | None = None) -> Method:
    """The method registered as ``name``, with its options checked."""
    cls = METHODS[name]
    return cls(card, opts, method_options(name, options))


def train_hwa(net: nn.Module, card: DeviceModel, method: str, data: Split,
              opts: TrainOptions | None = None, options: MethodOptions | dict | None = None,
              progress: bool = False, checkpoint_dir: str | Path | None = None,
              resume: str | Path | None = None) -> HWAResult:
    """Hardware-aware training from the floating-point ``net`` (see the module docstring);
    ``options`` are the method's own (its options class, or a dict of its fields).

    With ``checkpoint_dir``, ``checkpoint.pt`` there is replaced after every epoch (weights, optimizer,
    the method's step and every random generator); ``resume`` continues from such a file with the
    same method and options and gives the network an uninterrupted run would have given."""
    opts = opts or TrainOptions()
    opts.check()
    m = make_method(method, card, opts, options)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    wrapped = wrap(net, m)
    levels = m.pipeline_levels()
    history: list[dict] = []
    first, opt_state = (0, 0), None  # (level index, epoch) to start from
    if resume is not None:
        first, opt_state, history = _restore(Path(resume), method, opts, wrapped, m, gen, levels)
    start = time.perf_counter()
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt:
        ckpt.mkdir(parents=True, exist_ok=True)
    with one_thread():  # the same seed gives the same model
        for li in range(first[0], len(levels)):
            level = levels[li]
            if level is not None:
                m.level = level  # each pipeline fine-tunes the previous one
            opt = opts.make_optimizer(wrapped.parameters())
            e0 = first[1] if li == first[0] else 0
            if opt_state is not None and li == first[0]:
                opt.load_state_dict(opt_state)
            bar = tqdm(range(e0, opts.epochs), desc=f"{method}{'' if level is None else f' L{level}'}",
                       disable=not progress, leave=False)
            for epoch in bar:
                for group in opt.param_groups:
                    group["lr"] = opts.lr_at(epoch)
                loss = _epoch(wrapped, m, opt, data, opts, gen)
                history.append({"level": level, "epoch": epoch, "loss": loss})
                bar.set_postfix(loss=f"{loss:.4f}")
                if ckpt:
                    _checkpoint(ckpt, method, opts, level, epoch, m, wrapped, opt, gen, history)
    wrapped.eval()
    return HWAResult(unwrap(wrapped), m, history, m.report(wrapped), time.perf_counter() - start)


def _all_options(opts: TrainOptions, m: Method) -> dict:
    """The training loop's and the method's options, as a checkpoint records them."""
    return opts.to_dict() | m.options.to_dict()


def _checkpoint(ckpt: Path, method: str, opts: TrainOptions, level, epoch: int, m: Method, wrapped,
                opt, gen, history: list[dict]) -> None:
    torch.save({"method": method, "options": _all_options(opts, m), "level": level, "epoch": epoch,
                "step": m.step, "state": wrapped.state_dict(), "optimizer": opt.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "batches": gen.get_state(),
                        "method": m.gen.get_state()},
                "history": history}, ckpt / "checkpoint.pt.part")
    # replaced whole, so a stopped run never leaves a half-written checkpoint
    (ckpt / "checkpoint.pt.part").replace(ckpt / "checkpoint.pt")


def _restore(path: Path, method: str, opts: TrainOptions, wrapped, m: Method, gen, levels):
    """Load a checkpoint into the wrapped network, method and generators; where to go on from."""
    try:
        ck = torch.load(path, weights_only=False)
        keys = ("method", "options", "level", "epoch", "step", "state", "optimizer", "rng")
        missing = [k for k in keys if k not in ck] if isinstance(ck, dict) else list(keys)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the user's file
        raise DevmodelError(f"--resume: {path} is not a readable checkpoint ({e})") from None
    if missing:
        raise DevmodelError(f"--resume: {path} is not a train-hwa checkpoint (no {missing[0]!r}; "
                            "checkpoints before resuming was possible cannot be continued)")
    if ck["method"] != method:
        raise DevmodelError(f"--resume: {path} was written by method {ck['method']}, not {method}")
    now = _all_options(opts, m)
    diff = [k for k, v in now.items() if k != "epochs" and _same(ck["options"].get(k)) != _same(v)]
    if diff:
        raise DevmodelError(f"--resume: option {diff[0]} was {ck['options'].get(diff[0])!r} in "
                            f"{path}, not {now[diff[0]]!r}; resume with the same options")
    try:
        wrapped.load_state_dict(ck["state"])
    except RuntimeError as e:
        raise DevmodelError(f"--resume: {path} holds another network ({str(e).splitlines()[0]})") from None
    m.step = int(ck["step"])
    torch.set_rng_state(ck["rng"]["torch"])
    gen.set_state(ck["rng"]["batches"])
    m.gen.set_state(ck["rng"]["method"])
    li, epoch = levels.index(ck["level"]), int(ck["epoch"]) + 1
    if epoch >= opts.epochs:  # that level was finished: the next one starts with a new optimizer
        return (li + 1, 0), None, list(ck.get("history", []))
    return (li, epoch), ck["optimizer"], list(ck.get("history", []))


def _epoch(net, m: Method, opt, data: Split, opts: TrainOptions, gen) -> float:
    net.train()
    n = data.x_train.shape[0]
    perm = torch.randperm(n, generator=gen)
    total = 0.0
    for i in range(0, n, opts.batch):
        idx = perm[i:i + opts.batch]
        x, y = data.x_train[idx], data.y_train[idx]
        opt.zero_grad()
        L = m.samples_per_step
        for _ in range(L):  # HA-SGD: the gradient averaged over L perturbations
            loss = F.cross_entropy(net(x), y) / L
            loss.backward()
            total += float(loss.detach()) * idx.numel()
        reg = m.regularizer(net)
        if torch.is_tensor(reg):
            reg.backward()
        opt.step()
        m.after_step(net)
    return total / n


def evaluate_hwa(result: HWAResult | nn.Module, card: DeviceModel, data: Split,
                 times_s: list[float], trials: int, seed: int = 0,
                 config: CrossbarConfig | None = None, extrapolate: bool = False) -> np.ndarray:
    """Accuracy (trials × times) on the analog simulator, with the method's crossbar configuration
    (or ``config``), calibrating input ranges on the programmed chip as ``evaluate_over_time``."""
    if isinstance(result, HWAResult):
        net, cfg = result.net, config or result.method.eval_config()
        rho = result.report.get("rho")
    else:
        net, cfg, rho = result, config or CrossbarConfig.standard(), None
    anet = convert(net, card, cfg, extrapolate)
    if rho:  # 004: a layer read with energy coefficient ρ fluctuates ∝ 1/ρ
        for layer, r in zip(anet.layers, rho, strict=True):
            layer.config = layer.config.with_(w_noise=layer.config.w_noise / r)
    return evaluate_over_time(anet, data.x_test, data.y_test, times_s, trials, seed,
                              calibration=data.x_train)


def _same(v):
    """Options compared across a checkpoint: tuples and lists alike."""
    return list(v) if isinstance(v, (tuple, list)) else v
