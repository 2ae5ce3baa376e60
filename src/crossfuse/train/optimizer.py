"""AdamW with a cosine learning-rate decay, the trainer's optimiser, without torch's compiler stack.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` on its first use (its methods are wrapped so
that ``torch.compile`` skips them, and ``step`` calls ``torch._dynamo.graph_break``): 1.3 s and 0.4 s of
interpreter teardown in every ``crossfuse run`` on a 2-core CPU, more than the training of a small data
set. The two classes here do the arithmetic of ``torch.optim.AdamW`` (its single-tensor path, the one torch
takes on a CPU) and ``torch.optim.lr_scheduler.CosineAnnealingLR`` in the same order, so the weights after
every step are the same to the bit (tested); their state dicts have torch's layout, so checkpoints written
with either load in the other. Parameters on a GPU get torch's multi-tensor path instead (its default
there: a few kernels for all parameters rather than eight a parameter). On a CPU the trainer asks for
``flat=True``: the weights become views of one buffer and a step is eight operations on all of them
(:meth:`AdamW.step_flat`), the same numbers to the bit; from a million weights up, where those eight
passes over memory cost as much as the forward and backward, one pass of torch's fused kernel
(:meth:`AdamW.step_fused`), equal within rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019), one parameter group.

    For each parameter ``p`` with gradient ``g``, at step ``t``::

        p <- p (1 - lr wd)
        m <- m + (1 - b1) (g - m)              (lerp)
        v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    Parameters without a gradient are skipped, as in torch.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        flat: bool = False,
    ) -> None:
        self.params = list(params)
        group = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        self.param_groups = [{"params": self.params, **group, "initial_lr": lr}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        #: The step count every parameter shares, or ``None`` once one was skipped (see :meth:`step`).
        self.common_step: int | None = 0
        self.flat: FlatBuffers | None = None
        if flat and self.params and all(is_flattenable(p, self.params[0]) for p in self.params):
            self.flat = FlatBuffers(self.params)
            for p, (exp_avg, exp_avg_sq) in zip(self.params, self.flat.moment_views(), strict=True):
                self.state[p] = {"step": torch.tensor(0.0), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    @torch.no_grad()
    def restart(self) -> None:
        """Forget every moment and the step count, as a new optimiser over the same parameters would
        (the hyperparameters, and the learning rate a schedule set, stay)."""
        self.common_step = 0
        if self.flat is not None:  # the moments stay views of the flat buffers
            self.flat.exp_avg.zero_()
            self.flat.exp_avg_sq.zero_()
            for state in self.state.values():
                state["step"] = torch.tensor(0.0)
            return
        self.state = {}

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:
            state = self.state[p] = {
                "step": torch.tensor(0.0),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return state

    def hyperparameters(self) -> tuple[float, float, float, float, float]:
        group = self.param_groups[0]
        (beta1, beta2) = group["betas"]
        return group["lr"], beta1, beta2, group["eps"], group["weight_decay"]

    @torch.no_grad()
    def step(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        every = len(params) == len(self.params)
        self.common_step = self.common_step + 1 if every and self.common_step is not None else None
        if params and params[0].is_cuda:
            self.step_foreach(params)
            return
        if self.flat is not None and self.common_step is not None:
            if self.flat.params.numel() >= FUSED_MIN_ELEMENTS:
                self.step_fused()
            else:
                self.step_flat()
            return
        lr, beta1, beta2, eps, weight_decay = self.hyperparameters()
        for p in params:
            state = self.state_of(p)
            step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
            step_t += 1
            if weight_decay != 0:
                p.mul_(1 - lr * weight_decay)
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))

    @torch.no_grad()
    def step_flat(self) -> None:
        """The same update as the loop, as eight operations on all parameters at once (they are views of
        one buffer, :class:`FlatBuffers`): elementwise arithmetic gives each element the same result
        wherever it lies, so the weights are the loop's to the bit (tested), without its eight small
        operations a parameter. Taken on a CPU while every parameter has a gradient at every step (so that
        they share one step count, hence one bias correction)."""
        flat = self.flat
        step = self.gather_flat_gradients()
        lr, beta1, beta2, eps, weight_decay = self.hyperparameters()
        if weight_decay != 0:
            flat.params.mul_(1 - lr * weight_decay)
        flat.exp_avg.lerp_(flat.grads, 1 - beta1)
        flat.exp_avg_sq.mul_(beta2).addcmul_(flat.grads, flat.grads, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        denom = (flat.exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
        flat.params.addcdiv_(flat.exp_avg, denom, value=-(lr / bias_correction1))

    @torch.no_grad()
    def step_fused(self) -> None:
        """The same update in one pass over the four buffers: torch's fused AdamW kernel
        (``torch._fused_adamw_``, what ``torch.optim.AdamW(fused=True)`` calls). The step's operations
        each stream every buffer through memory, so on a model of millions of weights (a 20,000-word bag
        of words under a 256-unit layer) they took as long as its forward and backward; fused, the step
        is about seven times shorter. Its vector arithmetic rounds differently from the loop's (about one
        part in 10^7 a step), so it is taken only from :data:`FUSED_MIN_ELEMENTS` weights up: smaller
        models keep the loop's numbers to the bit."""
        flat = self.flat
        step = self.gather_flat_gradients()
        lr, beta1, beta2, eps, weight_decay = self.hyperparameters()
        torch._fused_adamw_(
            [flat.params],
            [flat.grads],
            [flat.exp_avg],
            [flat.exp_avg_sq],
            [],
            [torch.tensor(step)],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            eps=eps,
            amsgrad=False,
            maximize=False,
        )

    def gather_flat_gradients(self) -> float:
        """Copy every gradient into the flat buffer and count the step; return the step number."""
        flat = self.flat
        assert flat is not None and self.common_step is not None
        torch._foreach_copy_(flat.grad_views, [p.grad for p in self.params])
        torch._foreach_add_([self.state[p]["step"] for p in self.params], 1)
        return float(self.common_step)

    def release(self) -> None:
        """Give every parameter its own memory again (after training: a model whose weights are views of
        one buffer cannot be written with safetensors); the optimiser then steps parameter by parameter."""
        if self.flat is None:
            return
        for p in self.params:
            p.data = p.data.clone()
        for state in self.state.values():
            state["exp_avg"], state["exp_avg_sq"] = state["exp_avg"].clone(), state["exp_avg_sq"].clone()
        self.flat = None

    @torch.no_grad()
    def step_foreach(self, params: list[torch.Tensor]) -> None:
        """The same update with one multi-tensor kernel an operation (torch's default on a GPU): a
        per-tensor loop would launch eight kernels a parameter."""
        lr, beta1, beta2, eps, weight_decay = self.hyperparameters()
        states = [self.state_of(p) for p in params]
        grads = [p.grad for p in params]
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        steps = []
        for state in states:
            state["step"] += 1
            steps.append(state["step"].item())
        if weight_decay != 0:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [(1 - beta2**step) ** 0.5 for step in steps])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, [-(lr / (1 - beta1**step)) for step in steps])

    def state_dict(self) -> dict:
        """torch's layout: per-parameter state by position, and the group with parameter positions."""
        index = {id(p): i for i, p in enumerate(self.params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "state": {index[id(p)]: dict(s) for p, s in self.state.items()},
            "param_groups": [group | {"params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        (group,) = state_dict["param_groups"]
        for key in ("lr", "eps", "weight_decay", "initial_lr"):
            if key in group:
                self.param_groups[0][key] = group[key]
        self.param_groups[0]["betas"] = tuple(group["betas"])
        loaded = {self.params[int(i)]: values for i, values in state_dict["state"].items()}
        steps = {int(torch.as_tensor(values["step"]).item()) for values in loaded.values()}
        self.common_step = steps.pop() if len(steps) == 1 and len(loaded) == len(self.params) else None
        if not loaded:
            self.common_step = 0
        if self.flat is not None:  # the moments stay views of the flat buffers: copy into them
            self.flat.exp_avg.zero_()
            self.flat.exp_avg_sq.zero_()
            for p, state in self.state.items():
                state["step"] = torch.tensor(0.0)
                if p in loaded:
                    state["step"] = torch.as_tensor(loaded[p]["step"], dtype=torch.float32).clone()
                    state["exp_avg"].copy_(loaded[p]["exp_avg"])
                    state["exp_avg_sq"].copy_(loaded[p]["exp_avg_sq"])
            return
        self.state = {}
        for p, values in loaded.items():
            self.state[p] = {
                "step": torch.as_tensor(values["step"], dtype=torch.float32).clone(),
                "exp_avg": values["exp_avg"].to(p.device, p.dtype).clone(),
                "exp_avg_sq": values["exp_avg_sq"].to(p.device, p.dtype).clone(),
            }


#: Weights from which a flat CPU step uses torch's fused kernel (:meth:`AdamW.step_fused`): 2^20 float32
#: values are 4 MiB a buffer, beyond this machine's per-core cache, where the step is bound by memory.
#: Every AV-Digits model of the benchmarks is below it (the largest, TFN, has about 0.3 million).
FUSED_MIN_ELEMENTS = 2**20

#: Each parameter's view starts on a multiple of 16 elements (64 bytes of float32), the alignment
#: torch's CPU allocator gives a tensor of its own, so that no kernel sees a different alignment.
ALIGNMENT = 16


def is_flattenable(p: torch.Tensor, first: torch.Tensor) -> bool:
    """A dense, contiguous CPU parameter of the first one's dtype."""
    return (
        p.device.type == "cpu" and p.layout == torch.strided and p.is_contiguous() and p.dtype == first.dtype
    )


class FlatBuffers:
    """The parameters, their gradients and both moments as four flat buffers; each parameter's data is
    re-pointed to its slice of the first (``p.data = view``), so the model trains the buffer."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        offsets, total = [], 0
        for p in params:
            offsets.append(total)
            total += -(-p.numel() // ALIGNMENT) * ALIGNMENT
        first = params[0]
        self.params = torch.zeros(total, dtype=first.dtype)
        self.grads, self.exp_avg, self.exp_avg_sq = (torch.zeros_like(self.params) for _ in range(3))
        self.slices = [(o, p.numel(), p.shape) for o, p in zip(offsets, params, strict=True)]
        for p, view in zip(params, self.views(self.params), strict=True):
            view.copy_(p.detach())
            p.data = view
        self.grad_views = self.views(self.grads)

    def views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        return [buffer[o : o + n].view(shape) for o, n, shape in self.slices]

    def moment_views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.views(self.exp_avg), self.views(self.exp_avg_sq), strict=True))


class CosineDecay:
    """``lr_k = eta_min + (lr_0 - eta_min) (1 + cos(pi k / K)) / 2`` after ``k`` of ``K`` steps (Loshchilov &
    Hutter, SGDR, ICLR 2017, without restarts), computed as torch's ``CosineAnnealingLR`` does: from the
    previous rate by the ratio of consecutive cosine terms."""

    def __init__(self, optimizer: AdamW, total_steps: int, eta_min: float) -> None:
        self.optimizer, self.total_steps, self.eta_min = optimizer, total_steps, eta_min
        self.base_lr = optimizer.param_groups[0]["initial_lr"]
        self.last_epoch = 0

    def step(self) -> None:
        self.last_epoch += 1
        k, total, group = self.last_epoch, self.total_steps, self.optimizer.param_groups[0]
        if (k - 1 - total) % (2 * total) == 0:
            group["lr"] = group["lr"] + (self.base_lr - self.eta_min) * (1 - math.cos(math.pi / total)) / 2
        else:
            group["lr"] = (1 + math.cos(math.pi * k / total)) / (1 + math.cos(math.pi * (k - 1) / total)) * (
                group["lr"] - self.eta_min
            ) + self.eta_min

    def state_dict(self) -> dict:
        return {
            "T_max": self.total_steps,
            "eta_min": self.eta_min,
            "base_lrs": [self.base_lr],
            "last_epoch": self.last_epoch,
            "_step_count": self.last_epoch + 1,
        }

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch = int(state["last_epoch"])
