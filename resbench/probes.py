"""Probes: pure functions over tensors, and the thin layer that decides when they run.

The pure functions take stacked block outputs `(..., B, T, C)` (leading dims are kept, so one call
measures every block) and return `(...)`. The hook layer — `capture` around forward and backward,
`track_update` around the optimizer step — exists only on logged steps; other steps pay nothing.
All numbers of a logged step stay on the device until `step_stats` brings them to the host in one copy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

_BLOCK_PARAM = re.compile(r"^blocks\.(\d+)\.(.+)$")

from .schema import BLOCK_PROBES  # the per-block columns of layers.csv after step, layer and stack

# ---- pure functions ---------------------------------------------------------------------------------


def grad_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of every gradient tensor, in one batched kernel: (P,)."""
    return torch.stack(torch._foreach_norm(grads))


def param_grad_norms(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each parameter's gradient, 0 where it has none (frozen, or unused by the forward): (P,).
    Only the gradients that exist are read (no zero tensors made for a frozen model's parameters)."""
    present = [i for i, param in enumerate(params) if param.grad is not None]
    if len(present) == len(params):
        return grad_norms([param.grad for param in params])
    norms = torch.zeros(len(params), device=params[0].device)
    if present:
        norms[present] = grad_norms([params[i].grad for i in present]).to(norms.dtype)
    return norms


def group_norms(norms: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """L2 norm over the members of each group, from the members' norms: (n_groups,)."""
    squares = torch.zeros(n_groups, dtype=norms.dtype, device=norms.device)
    return squares.index_add_(0, group, norms.square()).sqrt()


def hidden_rms(h: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of the residual stream h: (..., B, T, C) → (...)."""
    return torch.linalg.vector_norm(h, dim=(-3, -2, -1)) / math.sqrt(h.shape[-3:].numel())


def act_grad_norm(grad: torch.Tensor) -> torch.Tensor:
    """Mean over examples i of ‖∂ℓ_i/∂h_i‖, from grad = ∂L/∂h with L the batch-mean loss: (..., B, T, C) → (...).

    L = mean_i ℓ_i and h_i only reaches ℓ_i, so ∂ℓ_i/∂h_i = B·∂L/∂h_i and the mean over i of its norm is
    the sum over i of ‖∂L/∂h_i‖: a per-example size that does not depend on the batch size.
    """
    return torch.linalg.vector_norm(grad, dim=(-2, -1)).sum(-1)


def rank_residual(x: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of ‖X − 1·x̄ᵀ‖_F / ‖X‖_F, X one sequence's tokens, x̄ its mean token: (..., B, T, C) → (...).

    1 for well-spread tokens, 0 when every token is the same vector (rank collapse, Dong et al. 2021).
    The mean token is the x̄ that minimises the Frobenius residual.
    """
    residual = torch.linalg.vector_norm(x - x.mean(dim=-2, keepdim=True), dim=(-2, -1))  # (..., B)
    size = torch.linalg.vector_norm(x, dim=(-2, -1))
    return (residual / size.clamp_min(torch.finfo(x.dtype).tiny)).mean(-1)


def update_ratio(before: torch.Tensor, after: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """‖θ_after − θ_before‖ / ‖θ_before‖ over each segment of `sizes` elements of flat parameter vectors.

    before, after: (N,) with N = sum(sizes) → (len(sizes),).
    """
    n = len(sizes)
    # One batched norm kernel over both sets of segments; the difference is taken in a buffer of its own.
    change = torch.sub(after, before)
    norms = torch.stack(torch._foreach_norm([*before.split(sizes), *change.split(sizes)]))  # (2n,)
    return norms[n:] / norms[:n]


# ---- which parameter belongs to which block ------------------------------------------------------------


def block_stacks(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """(stack name, its blocks) in logging order: ("", model.blocks) for a single-stack model; a model
    with several (an encoder–decoder) names them in `model.stacks`, each an attribute holding `.blocks`."""
    names = getattr(model, "stacks", None)
    if names is None:
        return [("", model.blocks)]
    return [(name, getattr(model, name).blocks) for name in names]


class ParamLayout:
    """Every parameter with its block (None outside the blocks), its stack and its readable name.

    The blocks are `model.blocks` (resbench's models: `blocks.3.attn.qkv.weight` is block 3's
    `attn.qkv.weight`; an encoder–decoder's stacks each hold their own, see `block_stacks`), or any
    modules of `model` named in `blocks` (resbench.watch on your own model). Blocks are numbered across
    stacks (encoder then decoder) for the per-block sums; `block_stacks` and `block_layers` give each
    block's stack and its 0-based index inside that stack.
    """

    def __init__(self, model: nn.Module, blocks: Sequence[nn.Module] | None = None):
        if blocks is None:
            self._by_name(model)
        else:
            self._by_identity(model, blocks)
        self._group_blocks()

    def _by_name(self, model: nn.Module) -> None:
        stacks = block_stacks(model)
        self.block_stacks = [name for name, blocks in stacks for _ in blocks]
        self.block_layers = [layer for _, blocks in stacks for layer in range(len(blocks))]
        self.n_blocks = len(self.block_stacks)
        first_block = dict(zip([name for name, _ in stacks], _starts([len(blocks) for _, blocks in stacks])))
        self.params: list[nn.Parameter] = []
        self.layers: list[int | None] = []  # index inside the stack
        self.stacks: list[str] = []  # "" outside the blocks and for single-stack models
        self.names: list[str] = []
        self._blocks_of: list[int | None] = []  # index across stacks
        for name, param in model.named_parameters():
            prefix = name.split(".", 1)[0]  # "encoder" in "encoder.blocks.0.attn.qkv.weight"
            stack, rest = (prefix, name[len(prefix) + 1 :]) if prefix in first_block else ("", name)
            match = _BLOCK_PARAM.match(rest)
            self.params.append(param)
            self.layers.append(int(match.group(1)) if match else None)
            self.stacks.append(stack if match else "")
            self.names.append(match.group(2) if match else name)
            self._blocks_of.append(first_block[stack] + int(match.group(1)) if match else None)

    def _by_identity(self, model: nn.Module, blocks: Sequence[nn.Module]) -> None:
        """Block i owns the parameters of blocks[i] (the first block to hold a shared one), named within it."""
        owner: dict[int, tuple[int, str]] = {}
        for index, block in enumerate(blocks):
            for name, param in block.named_parameters():
                owner.setdefault(id(param), (index, name))
        self.n_blocks = len(blocks)
        self.block_stacks, self.block_layers = [""] * self.n_blocks, list(range(self.n_blocks))
        self.params, self.layers, self.names = [], [], []
        for name, param in model.named_parameters():
            layer, inner = owner.get(id(param), (None, name))
            self.params.append(param)
            self.layers.append(layer)
            self.names.append(inner)
        self.stacks = [""] * len(self.params)
        self._blocks_of = list(self.layers)

    def _group_blocks(self) -> None:
        # Parameters outside the blocks go to an extra bucket n_blocks, dropped from block rows.
        device = self.params[0].device
        self.group = torch.tensor([self.n_blocks if block is None else block for block in self._blocks_of],
                                  device=device)
        # The block parameters block by block, so that one flat copy of them is a run of per-block segments.
        in_blocks = sorted((block, i) for i, block in enumerate(self._blocks_of) if block is not None)
        self.block_params = [self.params[i] for _, i in in_blocks]
        self.block_sizes = [0] * self.n_blocks
        for block, i in in_blocks:
            self.block_sizes[block] += self.params[i].numel()
        self._block_views: list[torch.Tensor] = []

    def flat_block_params(self) -> torch.Tensor:
        """Every block parameter in one flat copy, block after block: (sum(block_sizes),)."""
        return torch.cat(self.block_views())

    def block_views(self) -> list[torch.Tensor]:
        """Each block parameter as a flat view, in `flat_block_params` order."""
        # Made once (a reshape per tensor per call is most of a flat copy's time); made anew if a
        # parameter's storage was replaced (param.data = ...).
        if not self._block_views or any(v.data_ptr() != p.data_ptr()
                                        for v, p in zip(self._block_views, self.block_params)):
            self._block_views = [p.detach().reshape(-1) for p in self.block_params]
        return self._block_views

    def grads(self) -> list[torch.Tensor]:
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]

    def frozen(self) -> list[bool]:
        """Which parameters take no gradient (requires_grad=False) now: their gradient norms are not measured."""
        return [not param.requires_grad for param in self.params]

    def frozen_blocks(self, frozen: Sequence[bool]) -> set[int]:
        """The blocks (index across stacks) that hold parameters, every one of them in `frozen`."""
        held: dict[int, bool] = {}
        for block, is_frozen in zip(self._blocks_of, frozen):
            if block is not None:
                held[block] = held.get(block, True) and is_frozen
        return {block for block, all_frozen in held.items() if all_frozen}


# ---- hooks: only on logged steps ---------------------------------------------------------------------


def _starts(sizes: list[int]) -> list[int]:
    """Index of each segment's first element when segments of `sizes` are laid end to end."""
    return [sum(sizes[:i]) for i in range(len(sizes))]


class BlockCapture:
    """Block outputs and their gradients over the passes of a step (a forward, then its backward), each pass
    reduced on the device as its backward ends to hidden_rms, act_grad_norm and rank_residual per block.

    What a pass measures: hidden_rms and rank_residual of every block that ran forward with gradients on, and
    act_grad_norm of those whose output got a gradient (frozen blocks below every trainable parameter get
    none: their act_grad_norm stays unmeasured). What the hooks leave out, so that each block counts once:
    - a forward without gradients (an evaluation under torch.no_grad; the first run of a reentrant activation
      checkpoint, whose recomputation during the backward is measured instead);
    - a block's forward run again during the backward (non-reentrant activation checkpointing recomputes
      it; the output of the pass's own forward is held already);
    - a block output replaced by a later forward before any backward reached it (one forward per backward:
      with several, the last counts).
    A pass ends when the autograd engine finishes the backward that reached the model's output or a block's
    (an engine callback, run after the other callbacks of that backward, DDP's reducer's among them);
    `on_backward_end` is then called, after the reduction.
    """

    def __init__(self, n_blocks: int, on_backward_end: Callable[[], None] | None = None):
        self.n_blocks = n_blocks
        self.on_backward_end = on_backward_end
        self.forwards = 0  # block forwards measured (none at all on a logged step: the hooks did not run)
        self._outputs: list[torch.Tensor | None] = [None] * n_blocks
        self._grads: list[torch.Tensor | None] = [None] * n_blocks
        self._ending = False  # the end-of-backward callback is queued
        self._sum: torch.Tensor | None = None  # (3, n_blocks) over the passes
        self._counts = [[0] * n_blocks for _ in range(3)]  # passes that measured each probe of each block
        self._examples_are_tokens = False

    def forward_hook(self, index: int):
        def hook(module: nn.Module, args, output: torch.Tensor | tuple) -> None:
            if isinstance(output, tuple):  # blocks that also return caches or attention weights: the stream first
                output = output[0]
            if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
                return
            if _in_backward():
                if self._outputs[index] is not None:
                    return  # recomputed by non-reentrant checkpointing
                self._end_after_backward()  # recomputed by a reentrant checkpoint: this pass's backward is on
            if output.dim() == 2:  # an MLP's (B, C): each example one token
                self._examples_are_tokens = True
            kept = self._outputs[index] = output.detach()
            self.forwards += 1
            if output.requires_grad:
                output.register_hook(lambda grad: self._on_grad(index, kept, grad))
        return hook

    def model_hook(self, module: nn.Module, args, output: object) -> None:
        """On the model itself: a backward from its output ends a pass even when no block gets a gradient."""
        if not torch.is_grad_enabled() or _in_backward():
            return
        for tensor in _tensors(output):
            if tensor.requires_grad:
                tensor.register_hook(lambda grad: self._end_after_backward())

    def _on_grad(self, index: int, output: torch.Tensor, grad: torch.Tensor) -> None:
        if self._outputs[index] is output:  # else a forward replaced this output since
            self._grads[index] = grad
            self._end_after_backward()

    def _end_after_backward(self) -> None:
        if not self._ending:
            self._ending = True
            torch.autograd.Variable._execution_engine.queue_callback(self._after_other_callbacks)

    def _after_other_callbacks(self) -> None:
        """Queued once more, so that the pass ends after every callback the backward queued after this one's
        first queuing: DDP's reducer queues its own when the last bucket is ready, and only then are the
        gradients averaged over the processes (read before, they would be this process's own)."""
        torch.autograd.Variable._execution_engine.queue_callback(self._backward_ended)

    def _backward_ended(self) -> None:
        self._ending = False
        self._reduce_pass()
        if self.on_backward_end is not None:
            self.on_backward_end()

    @torch.no_grad()
    def _reduce_pass(self) -> None:
        # Blocks whose outputs share a shape are reduced together: a stack's blocks do; an encoder's and a
        # decoder's may not (their sequence lengths differ).
        by_shape: dict[torch.Size, list[int]] = {}
        for i, output in enumerate(self._outputs):
            if output is not None:
                by_shape.setdefault(output.shape, []).append(i)
        if not by_shape:
            return
        groups = list(by_shape.values())
        if len(groups) == 1 and len(groups[0]) == self.n_blocks:  # one shape, every block ran: no scatter needed
            values = self._group_values(groups[0])
        else:
            values = torch.zeros(3, self.n_blocks, device=self._outputs[groups[0][0]].device)
            for group in groups:
                values[:, group] = self._group_values(group)
        self._sum = values if self._sum is None else self._sum + values
        for i, (output, grad) in enumerate(zip(self._outputs, self._grads)):
            for probe, measured in enumerate((output is not None, grad is not None, output is not None)):
                self._counts[probe][i] += measured
        self._outputs = [None] * self.n_blocks
        self._grads = [None] * self.n_blocks

    def _group_values(self, blocks: list[int]) -> torch.Tensor:
        """(3, len(blocks)): hidden_rms, act_grad_norm, rank_residual of `blocks`, which ran forward with outputs
        of one shape; act_grad_norm 0 where no gradient came (not measured)."""
        with_grad = [i for i, block in enumerate(blocks) if self._grads[block] is not None]
        hidden = self._stacked([self._outputs[block] for block in blocks])  # (L', B, T, C); (L', B, 1, C): MLP
        grad = self._stacked([self._grads[blocks[i]] for i in with_grad])  # fp32 also under autocast
        # For the MLP the rank is over the batch: one "sequence" whose tokens are the examples.
        tokens = hidden.transpose(-3, -2) if self._examples_are_tokens else hidden
        if len(with_grad) == len(blocks):  # every block measured (no frozen bottom): no scatter needed
            return torch.stack([hidden_rms(hidden), act_grad_norm(grad), rank_residual(tokens)])
        act = torch.zeros(len(blocks), device=hidden.device)
        if with_grad:
            act[with_grad] = act_grad_norm(grad)
        return torch.stack([hidden_rms(hidden), act, rank_residual(tokens)])

    def _stacked(self, tensors: list[torch.Tensor]) -> torch.Tensor | None:
        if not tensors:
            return None
        stacked = torch.stack(tensors).float()
        return stacked[:, :, None] if self._examples_are_tokens else stacked

    def values(self, accumulated: bool = False) -> dict[str, torch.Tensor]:
        """Per-block probes over the passes, on the device: name → (n_blocks,), NaN where no pass measured it.

        hidden_rms and rank_residual are means over the passes; act_grad_norm is their mean too, or with
        `accumulated` their sum: under gradient accumulation each pass backpropagates its share of the step's
        loss, and the gradient the step applies is the sum of the passes'. A pass whose backward never came
        (no gradient reached the model) counts when it is the only one.
        """
        if self._sum is None:
            self._reduce_pass()
        if self._sum is None:
            return {}
        counts = torch.tensor(self._counts, dtype=self._sum.dtype, device=self._sum.device)  # (3, n_blocks)
        mean = self._sum / counts  # 0 / 0: NaN where no pass measured
        if accumulated:
            mean[1] = torch.where(counts[1] > 0, self._sum[1], torch.nan)
        return {"hidden_rms": mean[0], "act_grad_norm": mean[1], "rank_residual": mean[2]}


def _in_backward() -> bool:
    """Whether the autograd engine is running a backward on this thread (as torch.utils.module_tracker asks)."""
    return torch._C._current_graph_task_id() != -1


def _tensors(output: object) -> list[torch.Tensor]:
    """The tensors of a module's output: itself, or the items of a tuple, list or dict (a ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return [output]
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return [item for item in items if isinstance(item, torch.Tensor)]


@contextmanager
def capture(model: nn.Module, active: bool = True, modules: Sequence[nn.Module] | None = None,
            on_backward_end: Callable[[], None] | None = None) -> Iterator[BlockCapture]:
    """Hooks on the blocks (every stack's `blocks`, or `modules`) and on the model while they run forward and
    backward; none when not `active`. `on_backward_end`: called as each backward through them ends."""
    stacks = [stack for _, stack in block_stacks(model)] if modules is None else [list(modules)]
    every_block = [block for stack_blocks in stacks for block in stack_blocks]
    blocks = BlockCapture(len(every_block), on_backward_end)
    if not active:
        yield blocks
        return
    handles = [block.register_forward_hook(blocks.forward_hook(i)) for i, block in enumerate(every_block)]
    handles.append(model.register_forward_hook(blocks.model_hook))
    try:
        yield blocks
    finally:
        for handle in handles:
            handle.remove()


class UpdateTracker:
    """The block parameters before an optimizer step (one flat copy), to measure the step after it."""

    def __init__(self, layout: ParamLayout, active: bool):
        self.layout = layout
        self.before = layout.flat_block_params() if active else None
        self.ratio: torch.Tensor | None = None  # (n_blocks,), set when an update was tracked

    @torch.no_grad()
    def finish(self) -> None:
        """`ratio` = update_ratio(before, after) without a flat copy of `after`: the snapshot itself becomes
        θ_before − θ_after, in one fused subtraction of the parameters (−Δθ has exactly Δθ's norm)."""
        if self.before is None:
            return
        before, sizes = self.before, self.layout.block_sizes
        size = torch._foreach_norm(before.split(sizes))  # ‖θ_before‖ per block, before it is overwritten
        views = self.layout.block_views()
        torch._foreach_sub_(before.split([v.numel() for v in views]), views)
        change = torch._foreach_norm(before.split(sizes))
        self.ratio = torch.stack(change) / torch.stack(size)
        self.before = None


@contextmanager
def track_update(layout: ParamLayout, active: bool = True) -> Iterator[UpdateTracker]:
    """Around `optimizer.step()`: per-block ‖Δθ‖/‖θ‖ in `.ratio` afterwards (None when not active)."""
    tracker = UpdateTracker(layout, active)
    yield tracker
    tracker.finish()


# ---- the host side -------------------------------------------------------------------------------------


@dataclass
class StepStats:
    """The host-side numbers of one logged step."""

    param_grad_norms: list[float | None]  # one per parameter tensor, in ParamLayout order (None: frozen)
    blocks: dict[str, list[float | None]]  # BLOCK_PROBES name → one value per block (None: not measured)
    grad_norm: float  # over all parameters

    @property
    def block_grad_norms(self) -> list[float]:
        return self.blocks["grad_norm"]

    def block_rows(self) -> list[tuple[float | None, ...]]:
        """One tuple of BLOCK_PROBES values per block."""
        return list(zip(*(self.blocks[name] for name in BLOCK_PROBES)))


def step_stats(layout: ParamLayout, param_grad_norms: torch.Tensor,
               block_values: dict[str, torch.Tensor | None] | None = None,
               frozen: Sequence[bool] | None = None) -> StepStats:
    """Gradient norms (per parameter, per block, total) and the block probes with a single device-to-host copy.

    `param_grad_norms` is `grad_norms(grads)`, taken before clipping or the optimizer touch the gradients;
    `block_values` maps probe names to (n_blocks,) device tensors; missing probes are None. `frozen`
    parameters (layout.frozen()) have no gradient norm, nor has a block all of whose parameters are frozen.
    An update ratio is dropped when the gradient is not finite: no update was taken from it.
    """
    measured = {name: value for name, value in (block_values or {}).items() if value is not None}
    block_grad_norms = group_norms(param_grad_norms, layout.group, layout.n_blocks + 1)[: layout.n_blocks]
    total = param_grad_norms.square().sum().sqrt()
    parts = [param_grad_norms, total[None], block_grad_norms, *(value.to(total.dtype) for value in measured.values())]
    host = torch.cat(parts).tolist()  # the one copy
    n_params, n_blocks = len(layout.params), layout.n_blocks
    grad_norm = host[n_params]
    blocks: dict[str, list[float | None]] = {name: [None] * n_blocks for name in BLOCK_PROBES}
    offset = n_params + 1
    for name in ("grad_norm", *measured):
        blocks[name] = host[offset : offset + n_blocks]
        offset += n_blocks
    param_norms: list[float | None] = host[:n_params]
    if frozen is not None and any(frozen):
        param_norms = [None if is_frozen else norm for norm, is_frozen in zip(param_norms, frozen)]
        for block in layout.frozen_blocks(frozen):
            blocks["grad_norm"][block] = None
    if not math.isfinite(grad_norm):
        blocks["update_ratio"] = [None] * n_blocks
    return StepStats(param_norms, blocks, grad_norm)
