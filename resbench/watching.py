"""resbench's probes on your own model, inside your own training loop: `resbench.watch`.

    w = resbench.watch(model, blocks="transformer.h", run_dir="runs/mine", log_every=10)
    for x, y in batches:
        loss = loss_fn(model(x), y)
        w.step(loss, optimizer)      # backward, probes (logged steps only), optimizer.step(), zero_grad
    w.close()

Or around your own backward and update (gradient clipping, a GradScaler, accumulation):

        scaler.scale(loss).backward()            # (or loss.backward(); over several micro-batches)
        w.after_backward(loss, scaler=scaler)    # the scaler's scale is divided out of every norm
        with w.tracking_update(optimizer):       # update ratio; the step's rows are written when it exits
            scaler.step(optimizer)

On a logged step the gradient norms are read as each backward through the model ends (so clipping or
unscaling done before `after_backward` does not reach them, and under accumulation the last read is of the
accumulated gradient); `after_backward` takes that reading. A framework whose own hook sees the final,
unscaled gradient (Lightning's on_before_optimizer_step) calls `gradients_ready` instead, and hooks
`begin_update` / `end_update` around its optimizer step (resbench.integrations).

The run dir gets the files of a resbench run (config.yaml, provenance.json, metrics.csv, grad_norms.csv,
layers.csv, summary.json; `tb/` with `logger="tensorboard"`), so `resbench report DIR` works on it. The cost
rules are the trainer's: block hooks exist only during logged steps (armed when the previous step ends), the
gradient norms and probes of a logged step reach the host in one copy, and an unlogged step touches nothing
but a counter.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import loggers, probes, records, runtime
from .loggers import StepListener
from .records import RunRecorder, config_hash
from .schema import LAYER_COLUMNS, METRIC_COLUMNS, Status, Summary

FINAL_LOSS_WINDOW = 10  # final_loss: the mean of the last 10 logged losses (unlogged losses are never read)
COMPILE_ADVICE = ("watch the model itself and compile each block's forward instead, so that the hooks run "
                  "around it (for b in blocks: b.forward = torch.compile(b.forward))")
HOOKS_DID_NOT_RUN = ("resbench.watch: no block ran its hooks on this logged step; a model compiled by torch.compile "
                     f"before they were added runs its compiled graph without them: {COMPILE_ADVICE}")


def check_not_compiled(model: nn.Module) -> None:
    """A torch.compile'd model runs the graph it traced, with the module hooks it saw then or none: refuse it."""
    if hasattr(model, "_orig_mod") or getattr(model, "_compiled_call_impl", None) is not None:
        raise ValueError(f"resbench.watch: the model is torch.compile'd; {COMPILE_ADVICE}")


def resolve_blocks(model: nn.Module, blocks: str | Sequence[nn.Module]) -> list[nn.Module]:
    """The residual blocks: a dotted path to a container of them (`"transformer.h"`) or a list of modules."""
    if isinstance(blocks, str):
        try:
            container = model.get_submodule(blocks)
        except AttributeError:
            children = ", ".join(name for name, _ in model.named_children()) or "none"
            raise ValueError(f"blocks={blocks!r}: no such submodule; the model's top-level modules: {children}") from None
        found = list(container.children())
    else:
        found = list(blocks)
    if not found:
        raise ValueError(f"blocks={blocks!r}: no blocks in it (give a ModuleList/Sequential or a list of modules)")
    inside = {id(module) for module in model.modules()}
    strangers = [i for i, module in enumerate(found) if not isinstance(module, nn.Module) or id(module) not in inside]
    if strangers:
        raise ValueError(f"blocks: item {strangers[0]} is not a submodule of the model")
    return found


def scale_of(scaler: torch.amp.GradScaler | None) -> float:
    """The factor a GradScaler multiplied this step's loss by (1 without one, or with a disabled one)."""
    return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0


class Watch:
    """Probes on `blocks` of `model`, written step by step into `run_dir` (see the module's docstring).

    `start_step`: the index of the first step watched (a framework resuming at its global step).
    `listeners` are the step listeners (the `logger`'s); an integration may add its own.
    """

    def __init__(self, model: nn.Module, blocks: str | Sequence[nn.Module], run_dir: str | Path, log_every: int = 10,
                 config: dict[str, Any] | None = None, logger: str = "none", start_step: int = 0):
        if not (isinstance(log_every, int) and log_every >= 1):
            raise ValueError(f"log_every must be an integer >= 1, got {log_every!r}")
        check_not_compiled(model)
        self.model, self.blocks = model, resolve_blocks(model, blocks)
        self.log_every = log_every
        self.layout = probes.ParamLayout(model, self.blocks)
        self.config = {"model": {"name": type(model).__name__, "depth": len(self.blocks),
                                 "blocks": blocks if isinstance(blocks, str) else None},
                       "depth": len(self.blocks), "log_every": log_every, "logger": logger, **(config or {})}
        self.run_dir = Path(run_dir)
        self.listeners: list[StepListener] = loggers.build(self.config, self.run_dir)
        device = self.layout.params[0].device
        self.recorder = RunRecorder(self.run_dir, self.config, METRIC_COLUMNS, LAYER_COLUMNS,
                                    provenance=records.provenance(runtime.runtime_facts(device)))
        self.summary = Summary(n_params=sum(p.numel() for p in model.parameters()),
                               config_hash=config_hash(self.config), device=str(device))
        self.recorder.write_summary(self.summary)
        self.step_index = start_step
        self._losses: deque[float] = deque(maxlen=FINAL_LOSS_WINDOW)
        self._start = time.perf_counter()
        self._capture: probes.BlockCapture | None = None
        self._hooks: ExitStack | None = None  # the capture's hooks, while armed
        self._grad_norms: torch.Tensor | None = None  # (P,) on the device, read as the last backward ended
        self._gradients: dict[str, Any] | None = None  # the logged step's gradient side, once final
        self._update: probes.UpdateTracker | None = None
        self._lr: float | None = None
        self._warned_frozen = False
        self._closed = False
        self._arm()

    # ---- the loop ------------------------------------------------------------------------------------

    @property
    def logged(self) -> bool:
        """Whether the current step is a logged one (step 0 and every `log_every`-th)."""
        return self.step_index % self.log_every == 0

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler | None = None) -> None:
        """One training step from its loss: backward, probes, `optimizer.step()`, `optimizer.zero_grad()`;
        with a GradScaler, its backward of the scaled loss, `scaler.step(optimizer)` and `scaler.update()`."""
        (loss if scaler is None else scaler.scale(loss)).backward()
        self.after_backward(loss, scaler)
        with self.tracking_update(optimizer):
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def after_backward(self, loss: torch.Tensor | float | None = None,
                       scaler: torch.amp.GradScaler | None = None) -> None:
        """After the step's (last) backward, before the update: on a logged step, the gradient norms as that
        backward left them, before clipping or unscaling (read now if no backward was seen), with `scaler`'s
        scale divided out of them and of the activation gradients. `loss`: the step's loss (unscaled)."""
        if not self.logged:
            return
        if self._grad_norms is None:
            self._read_gradients()
        scale = scale_of(scaler)
        self._finish_gradients(loss, self._grad_norms, grad_scale=scale, act_scale=scale,
                               overflow_skips=scaler is not None and scaler.is_enabled())

    def gradients_ready(self, loss: torch.Tensor | float | None = None, loss_scale: float = 1.0,
                        overflow_skips: bool = False) -> None:
        """For a framework's hook that sees the step's final gradient, unscaled and not yet clipped: on a
        logged step, its norms now. `loss_scale`: the factor the activation gradients still carry (a loss
        scaler's). `overflow_skips`: a non-finite gradient skips the update (a scaler) rather than diverging."""
        if self.logged:
            self._finish_gradients(loss, probes.param_grad_norms(self.layout.params), grad_scale=1.0,
                                   act_scale=loss_scale, overflow_skips=overflow_skips)

    @contextmanager
    def tracking_update(self, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
        """Around `optimizer.step()`: the per-block update ratio on logged steps; the step's rows at exit."""
        self.begin_update(optimizer)
        yield
        self.end_update()

    def begin_update(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Just before the optimizer step: on a logged step, the block parameters as they are (one flat copy)
        and the learning rate the step uses."""
        if self._gradients is not None:
            self._update = probes.UpdateTracker(self.layout, active=True)
            self._lr = optimizer.param_groups[0].get("lr") if optimizer is not None else None

    def end_update(self, next_step: int | None = None) -> None:
        """Just after the optimizer step: the update ratio and the logged step's rows; the next step begins,
        with index `next_step` (a framework's own count of optimizer steps; by default one more)."""
        if self._update is not None:
            self._update.finish()
        if self._gradients is not None:
            self._record(self._update.ratio if self._update is not None else None)
        self._gradients = self._update = None
        self._disarm()  # a logged step whose gradients were never taken: its hooks go, as every step's do
        self.step_index = self.step_index + 1 if next_step is None else next_step
        self.summary.steps_done = self.step_index
        self._arm()

    # ---- hooks only on logged steps ------------------------------------------------------------------

    def _arm(self) -> None:
        if self.logged and not self._closed:
            self._grad_norms = None
            self._hooks = ExitStack()
            self._capture = self._hooks.enter_context(probes.capture(
                self.model, active=True, modules=self.blocks, on_backward_end=self._read_gradients))

    def _disarm(self) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None

    def _read_gradients(self) -> None:
        """The norm of every parameter's gradient as it is now (on the device)."""
        self._grad_norms = probes.param_grad_norms(self.layout.params)

    def _finish_gradients(self, loss: torch.Tensor | float | None, grad_norms: torch.Tensor, grad_scale: float,
                          act_scale: float, overflow_skips: bool) -> None:
        """The logged step's gradient side, final: norms and block probes unscaled, the hooks removed."""
        capture, self._capture = self._capture, None
        self._disarm()
        if capture is None or capture.forwards == 0:
            raise RuntimeError(HOOKS_DID_NOT_RUN)
        values = capture.values(accumulated=True)
        if act_scale != 1.0 and "act_grad_norm" in values:
            values["act_grad_norm"] = values["act_grad_norm"] / act_scale
        frozen = self.layout.frozen()
        self._warn_frozen(frozen)
        self._gradients = {"loss": loss.detach() if isinstance(loss, torch.Tensor) else loss,
                           "grad_norms": grad_norms / grad_scale if grad_scale != 1.0 else grad_norms,
                           "values": values, "frozen": frozen, "overflow_skips": overflow_skips}
        self._grad_norms = None

    def _warn_frozen(self, frozen: list[bool]) -> None:
        if any(frozen) and not self._warned_frozen:
            self._warned_frozen = True
            warnings.warn(f"resbench: {sum(frozen)} of {len(frozen)} parameter tensors are frozen (requires_grad="
                          "False): their gradient norms stay empty; hidden_rms and rank_residual are measured",
                          stacklevel=4)

    def _record(self, update_ratio: torch.Tensor | None) -> None:
        gradients = self._gradients
        stats = probes.step_stats(self.layout, gradients["grad_norms"],
                                  {**gradients["values"], "update_ratio": update_ratio}, gradients["frozen"])
        loss = gradients["loss"]
        loss = float(loss) if loss is not None else None
        if loss is not None:
            self._losses.append(loss)
        step = self.step_index
        first, last = stats.block_grad_norms[0], stats.block_grad_norms[-1]
        if step == 0 and first and last is not None:
            self.summary.init_grad_ratio = last / first
        row = {"step": step, "loss": loss, "lr": self._lr, "grad_norm": stats.grad_norm,
               "elapsed_s": round(time.perf_counter() - self._start, 4)}
        grad_rows = records.grad_norm_rows(self.layout, step, stats)
        layer_rows = records.layer_rows(self.layout, step, stats)
        self.recorder.log(row, grad_rows, layer_rows)
        for listener in self.listeners:
            listener.log(row, grad_rows, layer_rows)
        finite = [value for value in self._losses if math.isfinite(value)]
        self.summary.final_loss = sum(finite) / len(finite) if finite else None
        bad_gradient = not math.isfinite(stats.grad_norm) and not gradients["overflow_skips"]
        if bad_gradient or (loss is not None and not math.isfinite(loss)):
            self.summary.status = Status.DIVERGED  # the user's loop decides whether to go on; close() keeps it

    # ---- the end -------------------------------------------------------------------------------------

    def close(self, status: str | None = None, error: str | None = None) -> dict[str, Any]:
        """Remove any hooks, close the files and write the final summary.json; returns it."""
        if self._closed:
            return self.summary.to_dict()
        self._closed = True
        self._disarm()
        if status is not None:
            self.summary.status = status
        elif self.summary.status == Status.RUNNING:
            self.summary.status = Status.COMPLETED
        self.summary.update(error=error, wall_s=round(time.perf_counter() - self._start, 3))
        self.recorder.close(self.summary)
        summary = self.summary.to_dict()
        for listener in self.listeners:
            listener.close(summary)
        return summary

    def __enter__(self) -> Watch:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(*ending(value))


def ending(exception: BaseException | None,
           interrupts: tuple[type[BaseException], ...] = ()) -> tuple[str | None, str | None]:
    """(status, error) of a run that `exception` ended (None: it ended normally). Ctrl-C, and the
    framework's own interrupt exceptions `interrupts`, end it interrupted; any other exception, failed."""
    if exception is None:
        return None, None
    if isinstance(exception, (KeyboardInterrupt, *interrupts)):
        return Status.INTERRUPTED, None
    return Status.FAILED, f"{type(exception).__name__}: {exception}"


def watch(model: nn.Module, blocks: str | Sequence[nn.Module], run_dir: str | Path, log_every: int = 10,
          config: dict[str, Any] | None = None, logger: str = "none") -> Watch:
    """Attach resbench's probes to `model`'s residual `blocks` (a dotted path like `"transformer.h"` or a
    list of modules); rows go into `run_dir` as a resbench run's files.

    `config`: anything you want recorded in config.yaml (and grouped by in `resbench report`), e.g.
    `{"norm": "pre", "lr": 3e-4}`. `logger="tensorboard"` also writes `run_dir/tb/`. Use it as a context
    manager, or call `close()` at the end; a step is `w.step(loss, optimizer)` (with a GradScaler:
    `w.step(loss, optimizer, scaler=scaler)`).
    """
    return Watch(model, blocks, run_dir, log_every, config, logger)
