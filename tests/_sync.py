"""Counting host synchronisations (shared by the train() tests)."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostReads(TorchDispatchMode):
    """Counts reads of tensor values by the host: ``.item()``, ``float()``, ``bool()`` (all dispatch
    ``aten::_local_scalar_dense``), plus ``.numpy()`` and ``.tolist()`` (counted by patching them)."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.count = 0
        for name in ("numpy", "tolist"):
            original = getattr(torch.Tensor, name)

            def counted(t, *args, _original=original, **kwargs):
                self.count += 1
                return _original(t, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))
