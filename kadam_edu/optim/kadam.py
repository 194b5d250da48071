"""The :class:`KAdam` optimizer (Eq. 10; Algorithm 1 of App. S), shaped as ``torch.optim.Adam``:
the class checks its arguments, keeps the state (created lazily, checked when loaded) and hands
the arithmetic to the flat step functions of :mod:`kadam_edu.optim.functional` (or, with
``fused=True``, to :class:`~kadam_edu.optim.fused.FlatKAdam`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.weak import WeakTensorKeyDictionary

from kadam_edu.optim.functional import _apply_member_updates, _foreach_kadam, _reduce_max, _single_tensor_kadam
from kadam_edu.optim.fused import FlatKAdam
from kadam_edu.optim.groups import (
    _check_fits_dtype,
    _check_group,
    _check_members,
    _check_param,
    _group_levels,
    _place_group_tensors,
)
from kadam_edu.optim.levels import Level, _describe

__all__ = ["KAdam"]

#: The keys every KAdam param group has (a state dict without them is another optimizer's).
_GROUP_KEYS = ("lr", "betas", "k", "strategy", "levels", "weight_decay", "coupled", "eps", "foreach")


class KAdam(Optimizer):
    r"""k-Adam (Eq. 10; Algorithm 1 of App. S). ``k=1`` is Adam / AdamW.

    .. code-block:: text

        given lr eta, weight decay lam, coupled, levels (gamma_i, beta_i), i = 1..k, eps
        g <- grad L(theta_n);  if coupled: g <- g + lam theta_n
        g_hat <- g
        for i = 1..k:                                      # adaptive_normalization (App. R)
            m_i <- gamma_i m_i + (1 - gamma_i) g_hat
            v_i <- beta_i v_i + (1 - beta_i) g_hat^2
            c   <- sqrt(1 - beta_i^(n+1)) / (1 - gamma_i^(n+1))
            g_hat <- c m_i / (sqrt(v_i) + eps)            # this is u_n^(i)
        u <- g_hat;  if not coupled: u <- u + lam theta_n
        theta_{n+1} <- theta_n - eta u

    The loop is :func:`adaptive_normalization` chained k times (App. R's operator composed k
    times): optax's ``chain(scale_by_adam(gamma_1, beta_1), ..., scale_by_adam(gamma_k, beta_k),
    add_decayed_weights(lam), scale(-lr))`` up to where eps enters (here on sqrt(v) before bias
    correction, so optax's eps is this eps / sqrt(1 - beta^(n+1)); identical for eps = 0). The
    single-tensor path calls that function's arithmetic for each parameter; the foreach path does
    the same over lists of tensors (tests check both against the chain).

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate eta: a finite number >= 0 (or a 1-element tensor); it must be
            representable in the parameters' dtype (lr=1e300 steps float64, not float32, parameters).
        betas: ``(gamma, beta)`` = (first-moment, second-moment) decay of Adam, as in
            torch. With ``k > 1`` the per-level values come from ``strategy``.
        k: number of adaptive-normalization levels (positive int). Every param group of one
            KAdam has the same k (a group with another k is refused when added).
        strategy: ``"inverse_exp"`` (default), ``"exp"``, ``"scaled"`` or ``"naive"``
            (Section 4.2; see :func:`kadam_levels`).
        levels: explicit list of ``k`` :class:`Level` s; overrides ``k``, ``strategy``
            and ``betas``. ``gamma=0`` at a level is RMSprop there.
        weight_decay: lam, a finite number >= 0.
        coupled: ``True`` adds ``lam theta`` to the gradient (Adam, L2); ``False``
            subtracts ``lr lam theta`` from the parameters (AdamW, decoupled).
        eps: a finite number >= 0, added to ``sqrt(v_i)`` *before* bias correction
            (Algorithm 1), so it acts like torch's eps divided by ``sqrt(1 - beta^(n+1))``. The
            default 1e-30 (Algorithm 1's) differs from torch's 1e-8 on purpose: the max-update
            bounds (Eq. 5 and the exact discrete bound) are proved for eps = 0, and a 1e-8 floor
            visibly damps updates whose gradients are ~1e-8 or smaller (late training, small
            weights), hiding the dynamics the book studies. 1e-30 only guards against 0/0 for
            exactly-zero gradients. It underflows in float16 (not bfloat16), which is refused at
            step time.
        foreach: ``True``: the ``torch._foreach_*`` path; ``False``: the single-tensor
            path (Algorithm 1 line by line); ``None``: the faster one for the device
            (foreach on CUDA, single-tensor on CPU; ``benchmarks/optimizer_step.py``
            measures both).
        fused: ``True``: the whole step as one compiled kernel per param group, device and dtype
            (:class:`~kadam_edu.optim.fused.FlatKAdam`: the group's parameters, gradients and moments live
            in flat buffers, the parameters as views into them). float32/float64 parameters, dense
            gradients, float decays, no ``members``; not with ``foreach=True``. The first step
            compiles the kernel (seconds; needs a C++ compiler on CPU, Triton on CUDA). New
            gradient tensors (``zero_grad()``) are copied into the flat buffer each step;
            ``zero_grad(set_to_none=False)`` lets backward write into it directly. After
            ``model.to(...)`` build a new optimizer (a state dict carries the state over).
            ``None`` (default) or ``False``: not fused, as in torch.
        members: ``E`` makes a *population* group: E models of one architecture trained as one
            batched model, every parameter of shape [E, ...]. Then ``lr`` and ``weight_decay``
            may be tensors [E], and the decays too (``betas=(gamma[E], beta[E])`` or
            ``levels=[Level(gamma=Tensor[E], beta=Tensor[E]), ...]``; one k for all members),
            each applied along dim 0. All groups of one KAdam have the same ``members``.

    Every group and parameter is checked before any parameter moves: a step that raises leaves
    parameters and state as they were. ``step()`` copies nothing to the host.

    After each step, :attr:`last_max_update_tensor` is ``||u_n||_inf`` (the paper's max-update,
    ``||theta_{n+1} - theta_n||_inf / lr``) and :attr:`last_level_max_updates_tensor` is
    ``[||u_n^(i)||_inf for i = 1..k]`` (App. T), both taken over all parameters stepped and kept
    on the parameters' device; :attr:`last_max_update` and :attr:`last_level_max_updates` read
    them on the host. In a population they are per member: [E] and [E, k].

    Population members can be frozen (:meth:`freeze_members`): a frozen member's parameters do
    not move (``masked_fill``, not a product, so nan/inf in its update cannot leak). A member whose
    update u_n is non-finite anywhere is frozen in that step, on the device, before the update is
    applied: its parameters keep their last finite values. A frozen member's moments keep
    absorbing its gradients (they are no longer used); freezing is permanent.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        k: int = 1,
        strategy: str = "inverse_exp",
        levels: Sequence[Level] | None = None,
        weight_decay: float | Tensor = 0.0,
        coupled: bool = False,
        eps: float = 1e-30,
        foreach: bool | None = None,
        fused: bool | None = None,
        *,
        members: int | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            k=k,
            strategy=strategy,
            levels=levels,
            weight_decay=weight_decay,
            coupled=coupled,
            eps=eps,
            foreach=foreach,
            fused=fused,
            members=members,
        )
        self._max_update: Tensor | None = None
        self._level_max_updates: Tensor | None = None
        self._active: Tensor | None = None  # population: members not frozen, bool [E] on the device
        # Scratch buffers hold u_n^(i) in place, so a step allocates nothing large.
        # They are not optimizer state (nothing carries over between steps).
        self._scratch: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        # fused groups: group index -> (its params, k, their (device, dtype, shape), its FlatKAdams)
        self._flats: dict[int, tuple[tuple[Tensor, ...], int, list[tuple], list[FlatKAdam]]] = {}
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """torch's ``add_param_group``, checked first: a refused group is not added."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif not isinstance(params, set):  # a set is refused by torch below
            params = list(params)
        param_group["params"] = params
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if not all(isinstance(p, Tensor) for p in tensors):
            kinds = ", ".join(sorted({type(p).__name__ for p in tensors}))
            raise TypeError(f"optimizer can only optimize Tensors; got {kinds}")
        candidate = {**self.defaults, **param_group, "params": tensors}
        k = len(_check_group(candidate, check_values=True))
        members = _check_members(candidate["members"])
        for i, group in enumerate(self.param_groups):
            if group["k"] != k:
                raise ValueError(
                    "all param groups of a KAdam must have the same number of levels (last_level_max_updates "
                    f"has one entry per level): this group has k={k}, param group {i} has k={group['k']}; "
                    "use a second KAdam for the other k"
                )
            if group["members"] != members:
                raise ValueError(
                    "all param groups of a KAdam must have the same members (a population steps its E "
                    f"members together): this group has members={members}, param group {i} has "
                    f"members={group['members']}; use a second KAdam"
                )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["k"] = k
        _place_group_tensors(group)
        if members is not None and self._active is None:
            device = tensors[0].device if tensors else torch.device("cpu")
            self._active = torch.ones(members, dtype=torch.bool, device=device)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_scratch", WeakTensorKeyDictionary())
        self.__dict__.setdefault("_max_update", None)
        self.__dict__.setdefault("_level_max_updates", None)
        self.__dict__.setdefault("_active", None)
        self.__dict__.setdefault("_flats", {})
        for group in self.param_groups:  # state dicts from before these options
            group.setdefault("members", None)
            group.setdefault("fused", None)

    @staticmethod
    def group_levels(group: dict) -> list[Level]:
        """The k :class:`Level` s a param group uses now (explicit ``levels``, else from
        betas/k/strategy). In a population group a level's gamma/beta may be a tensor [E]."""
        return _group_levels(group, check_values=False)

    @property
    def members(self) -> int | None:
        """The population size E of a population optimizer (param groups with ``members=E``), else None."""
        return self.param_groups[0]["members"] if self.param_groups else None

    # ------------------------------------------------------------ max-update
    @property
    def last_max_update_tensor(self) -> Tensor | None:
        """||u_n||_inf of the last step on the parameters' device, float64 (MPS: float32): 0-d, or
        [E] per member in a population (nan for members frozen before that step). None before the
        first step. Reading it copies nothing to the host."""
        return self._max_update

    @property
    def last_level_max_updates_tensor(self) -> Tensor | None:
        """[||u_n^(i)||_inf for i = 1..k] of the last step on the device: [k], or [E, k] in a
        population (App. T). None before the first step."""
        return self._level_max_updates

    def _k(self) -> int:
        return self.param_groups[0]["k"] if self.param_groups else 0

    @property
    def last_max_update(self) -> float | np.ndarray:
        """||u_n||_inf of the last step (the paper's max-update) as a float; nan before the first
        step (or on the meta device). In a population: a numpy array [E]. Copies to the host."""
        t, members = self._max_update, self.members
        if t is None or t.device.type == "meta":
            return math.nan if members is None else np.full(members, math.nan)
        return float(t) if members is None else t.cpu().numpy()

    @property
    def last_level_max_updates(self) -> list[float] | np.ndarray:
        """[||u_n^(i)||_inf for i = 1..k] of the last step (App. T); [] before the first step. In a
        population: a numpy array [E, k] (nan before the first step). Copies to the host."""
        t, members = self._level_max_updates, self.members
        if members is not None:
            if t is None or t.device.type == "meta":
                return np.full((members, self._k()), math.nan)
            return t.cpu().numpy()
        if t is None:
            return []
        return [math.nan] * self._k() if t.device.type == "meta" else t.tolist()

    # ------------------------------------------------------------ populations
    @property
    def active_members(self) -> Tensor | None:
        """Population: bool [E] on the device, False for frozen members (read-only: use
        :meth:`freeze_members`). None without members."""
        return self._active

    def freeze_members(self, mask) -> None:
        """Freeze the members where ``mask`` (bool [E]) is True: from the next step on their
        parameters do not move. Runs on the device (no host copy); freezing is permanent."""
        members = self.members
        if members is None:
            raise ValueError("freeze_members needs a population optimizer (param groups with members=E)")
        if not isinstance(mask, Tensor):
            mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.shape != (members,):
            raise ValueError(
                f"mask must be a bool tensor of shape [{members}] (True = freeze that member); got {_describe(mask)}"
            )
        self._active.logical_and_(~mask.to(self._active.device))

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> dict:
        """torch's state dict, plus ``members_active`` (bool [E]) for a population."""
        sd = super().state_dict()
        if self._active is not None:
            sd["members_active"] = self._active.clone()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, after checking that ``state_dict`` is a KAdam state dict
        that fits these parameters: anything else is refused with a ValueError and nothing changes.

        The hyperparameters come from ``state_dict``; ``foreach`` and ``fused`` (how the step is
        computed, not what) stay this optimizer's, so a fused run's checkpoint resumes unfused on a
        machine without a compiler and vice versa (the paths agree to rounding)."""
        self._check_state_dict(state_dict)
        active = state_dict.get("members_active")
        paths = [(group["foreach"], group.get("fused")) for group in self.param_groups]
        super().load_state_dict({key: value for key, value in state_dict.items() if key != "members_active"})
        for group, (foreach, fused) in zip(self.param_groups, paths):
            group.setdefault("members", None)
            group["foreach"], group["fused"] = foreach, fused
            group["k"] = len(_group_levels(group, check_values=False))
            _place_group_tensors(group)
        if self._active is not None:
            self._active = (torch.ones_like(self._active) if active is None
                            else active.to(self._active.device).clone())

    def _check_state_dict(self, sd) -> None:
        if not isinstance(sd, dict) or "state" not in sd or "param_groups" not in sd:
            raise ValueError("not a KAdam state dict: expected a dict with 'state' and 'param_groups' "
                             f"(from KAdam.state_dict()); got {type(sd).__name__}")
        saved_groups, state = sd["param_groups"], sd["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, this KAdam has "
                             f"{len(self.param_groups)}")
        ks = set()
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            missing = [key for key in _GROUP_KEYS if key not in saved]
            if missing:
                raise ValueError(
                    f"not a KAdam state dict: param_groups[{i}] lacks KAdam's keys {missing} (it has "
                    f"{sorted(saved)}); a state dict of another optimizer (e.g. torch.optim.Adam) cannot "
                    "be loaded into KAdam"
                )
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict's param group {i} has {len(saved['params'])} parameters, "
                                 f"this KAdam's has {len(group['params'])}")
            if saved.get("members") != group["members"]:
                raise ValueError(f"loaded state dict's param group {i} has members={saved.get('members')}, "
                                 f"this KAdam's has members={group['members']}")
            try:
                k = len(_check_group({**saved, "members": group["members"], "params": group["params"],
                                      "foreach": group["foreach"], "fused": group.get("fused")}, check_values=True))
            except ValueError as err:
                raise ValueError(f"loaded state dict's param group {i}: {err}") from None
            ks.add(k)
            for pid, p in zip(saved["params"], group["params"]):
                _check_param_state(state.get(pid), pid, p, k)
        if len(ks) > 1:
            raise ValueError(f"loaded state dict's param groups have different numbers of levels {sorted(ks)}")
        active = sd.get("members_active")
        members = self.members
        if active is not None:
            if members is None:
                raise ValueError("loaded state dict has members_active but this KAdam has no members")
            if not isinstance(active, Tensor) or active.dtype != torch.bool or active.shape != (members,):
                raise ValueError(f"loaded state dict's members_active must be a bool tensor of shape [{members}]; "
                                 f"got {_describe(active)}")

    # ------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """One k-Adam step; ``closure`` re-evaluates the loss (with grad enabled) and returns it.

        Every group and parameter is checked first, so a step that raises moves nothing. No host
        synchronisation: the max-updates stay on the device (see :attr:`last_max_update_tensor`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        checked = self._plan()
        if not checked:
            return loss
        plan = []  # (group, its parameters with a gradient, its levels, its FlatKAdams if fused)
        for i, group, params, levels in checked:
            flats = None
            if group.get("fused"):  # a FlatKAdam makes the state, as views into its buffers
                flats = self._fused_flats(i, group, len(levels), build=True)
            else:
                for p in params:
                    self._init_state(p, len(levels))
            plan.append((group, params, levels, flats))
        if self.members is None:
            self._step_models(plan)
        else:
            self._step_population(plan)
        return loss

    def _plan(self) -> list[tuple[int, dict, list[Tensor], list[Level]]]:
        """Check every group and parameter that will step; change nothing. Each entry: the group's
        index, the group, its parameters with a gradient and its levels."""
        plan, k = [], None
        for i, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            levels = _check_group(group, check_values=False)
            if k is None:
                k = (i, len(levels))
            elif len(levels) != k[1]:
                raise ValueError(
                    f"all param groups must use the same number of levels: param group {k[0]} has "
                    f"k={k[1]} but param group {i} has k={len(levels)}; build a second KAdam for the other k"
                )
            for dtype in {p.dtype for p in params}:
                _check_fits_dtype(group, dtype)
            for p in params:
                _check_param(p, self.state.get(p), len(levels), group["members"])
            if group.get("fused"):
                self._fused_flats(i, group, len(levels), build=False)
            plan.append((i, group, params, levels))
        return plan

    def _fused_flats(self, i: int, group: dict, k: int, *, build: bool) -> list[FlatKAdam] | None:
        """Fused param group i's :class:`~kadam_edu.optim.fused.FlatKAdam` s, one per device and dtype of its
        parameters (in the order they first appear), kept while the group holds the same parameters
        and k, else built anew (their states are copied over at the next step).

        A parameter whose device, dtype or shape changed since they were built (``model.to(...)``)
        is refused with a ValueError: its state lives in the old buffers. ``build=False`` only
        checks, and returns None where the buffers are still to be built."""
        params = tuple(group["params"])
        cached = self._flats.get(i)
        if cached is not None and cached[1] == k and len(cached[0]) == len(params) and all(
            a is b for a, b in zip(cached[0], params)
        ):
            for j, (p, (device, dtype, shape)) in enumerate(zip(params, cached[2])):
                if (p.device, p.dtype, p.shape) != (device, dtype, shape):
                    raise ValueError(
                        f"parameter {j} of param group {i} is now {p.dtype} of shape {tuple(p.shape)} on "
                        f"{p.device}, but KAdam(fused=True) keeps its state in flat buffers built for {dtype} "
                        f"of shape {tuple(shape)} on {device}: build a new optimizer after model.to(...) (or any "
                        "change of a parameter's device, dtype or shape); new.load_state_dict(old.state_dict()) "
                        "carries the state over"
                    )
            return cached[3]
        if not build:
            return None
        by_kind: dict[tuple, list[Tensor]] = {}
        for p in params:
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        flats = [FlatKAdam(same, k) for same in by_kind.values()]
        self._flats[i] = (params, k, [(p.device, p.dtype, p.shape) for p in params], flats)
        return flats

    def _init_state(self, p: Tensor, k: int) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["m"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in range(k)]
            state["v"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in range(k)]

    def _scratch_for(self, p: Tensor) -> Tensor:
        buf = self._scratch.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = torch.empty_like(p, memory_format=torch.preserve_format)
            self._scratch[p] = buf
        return buf

    def _run(self, group: dict, params: list[Tensor], levels: list[Level], *, apply: bool):
        foreach = group["foreach"]
        if foreach is None:
            foreach = _default_foreach(params)
        kernel = _foreach_kadam if foreach else _single_tensor_kadam
        scratch = [self._scratch_for(p) for p in params]
        lr, wd = (h if isinstance(h, Tensor) else float(h) for h in (group["lr"], group["weight_decay"]))
        maxes, level_maxes = kernel(
            params, [self.state[p] for p in params], scratch, levels=levels, lr=lr, weight_decay=wd,
            coupled=group["coupled"], eps=float(group["eps"]), members=group["members"], apply=apply,
        )
        return scratch, lr, maxes, level_maxes

    def _run_fused(self, group: dict, flats: list[FlatKAdam], levels: list[Level]):
        """A fused group's step: one kernel per FlatKAdam. Returns per-kernel max-updates, as :meth:`_run`."""
        maxes: list[Tensor] = []
        level_maxes: list[list[Tensor]] = [[] for _ in levels]
        for flat in flats:
            states = [self.state[p] if p.grad is not None else self.state.get(p, {}) for p in flat.params]
            out = flat.step(states, levels=levels, lr=group["lr"], weight_decay=group["weight_decay"],
                            coupled=group["coupled"], eps=float(group["eps"]))
            if out is not None:  # None: no parameter of this device and dtype has a gradient
                maxes.append(out[0])
                for acc, t in zip(level_maxes, out[1].unbind()):
                    acc.append(t)
        return maxes, level_maxes

    def _step_models(self, plan) -> None:
        maxes: list[Tensor] = []
        level_maxes: list[list[Tensor]] = [[] for _ in plan[0][2]]
        for group, params, levels, flats in plan:
            if group.get("fused"):
                mx, lmx = self._run_fused(group, flats, levels)
            else:
                _, _, mx, lmx = self._run(group, params, levels, apply=True)
            maxes.extend(mx)
            for acc, lm in zip(level_maxes, lmx):
                acc.extend(lm)
        device = plan[0][1][0].device
        self._max_update = _reduce_max(maxes, device)
        self._level_max_updates = torch.stack([_reduce_max(lm, device) for lm in level_maxes])

    def _step_population(self, plan) -> None:
        """Two passes: every member's update u_n first, then theta -= lr u_n for the members that are
        active and whose u_n is finite everywhere (the others are frozen now, on the device)."""
        device = plan[0][1][0].device
        if self._active.device != device:
            self._active = self._active.to(device)
        maxes: list[Tensor] = []
        level_maxes: list[list[Tensor]] = [[] for _ in plan[0][2]]
        pending = []
        for group, params, levels, _ in plan:
            scratch, lr, mx, lmx = self._run(group, params, levels, apply=False)
            pending.append((params, scratch, lr))
            maxes.extend(mx)
            for acc, lm in zip(level_maxes, lmx):
                acc.extend(lm)
        max_update = _reduce_max(maxes, device)  # [E]
        level_max = torch.stack([_reduce_max(lm, device) for lm in level_maxes], dim=-1)  # [E, k]
        was_frozen = ~self._active
        self._active.logical_and_(torch.isfinite(max_update))
        frozen = ~self._active
        for params, scratch, lr in pending:
            _apply_member_updates(params, scratch, lr, frozen)
        self._max_update = max_update.masked_fill_(was_frozen, math.nan)
        self._level_max_updates = level_max.masked_fill_(was_frozen[:, None], math.nan)


def _check_param_state(state, pid, p: Tensor, k: int) -> None:
    """A saved per-parameter state must be empty or KAdam's {'step': int, 'm': [k], 'v': [k]}."""
    if not state:
        return
    layout = "{'step': int, 'm': [k tensors], 'v': [k tensors]}"
    if not isinstance(state, dict) or set(state) != {"step", "m", "v"}:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a KAdam state dict: the state of parameter {pid} does not have KAdam's layout "
                         f"{layout}; got {keys}")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"not a KAdam state dict: the state of parameter {pid} has step={step!r}, "
                         "KAdam's layout needs an int >= 0")
    for key in ("m", "v"):
        moments = state[key]
        if not isinstance(moments, (list, tuple)) or len(moments) != k:
            n = len(moments) if isinstance(moments, (list, tuple)) else type(moments).__name__
            raise ValueError(f"the state of parameter {pid} holds {n} levels of {key} but its param group "
                             f"uses {k} levels")
        for i, t in enumerate(moments):
            if not isinstance(t, Tensor) or t.shape != p.shape:
                raise ValueError(f"the state of parameter {pid}: {key}[{i}] has shape "
                                 f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}, its parameter "
                                 f"has shape {tuple(p.shape)}")


def _default_foreach(params: list[Tensor]) -> bool:
    """foreach on CUDA (fewer kernel launches); the single-tensor path on CPU, where it
    is faster because it finishes each tensor while it is still in cache
    (``benchmarks/optimizer_step.py`` measures both)."""
    return all(p.device.type == "cuda" for p in params)

