"""A stand-in accelerator on the CPU: catches the device mix-ups a GPU run would raise, without a GPU.

Code that is meant to be device-agnostic is run with ``device=VIRTUAL`` (``torch.device("cpu", 0)``) inside
``with VirtualDevice():``. The mode (a TorchFunctionMode) keeps a mark on every tensor that is "on the
device": tensors made by a factory (``torch.zeros``, ``torch.tensor``, ...) with ``device=VIRTUAL`` (or a
device taken from a marked tensor), moved there by ``.to(...)``, or computed from a marked tensor; ``.cpu()``
and ``.to("cpu")`` drop the mark, and ``.device`` / ``.is_cuda`` of a marked tensor answer VIRTUAL / True.
Every torch call that takes both marked tensors and unmarked ones of one or more dimensions raises
:class:`DeviceMix` naming the call, as CUDA would ("Expected all tensors to be on the same device");
so does ``.numpy()`` of a marked tensor. What CUDA allows is allowed: 0-dimensional cpu tensors beside
device tensors, a device tensor indexed by cpu indices (``t[idx]``, ``t[idx] = v`` with v on the device),
and ``copy_`` across devices.

All arithmetic stays on the CPU (the numbers are the CPU's); the mode checks placement only, not speed,
kernels or numerics. Tensors made outside torch's Python API (inside C++ autograd, say) carry no mark;
where one meets a marked tensor the mode reports a mix that a GPU would not: an error to look at, never a
silent pass. tests/conftest.py runs the device-parametrised tests on it ("virtual") beside cpu and cuda;
:func:`cuda_is_virtual` makes ``--device cuda`` of the CLI resolve to it.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

VIRTUAL = torch.device("cpu", 0)
_MARK = "_certnn_on_virtual_device"
_DEVICE_GET = torch.Tensor.device.__get__
_IS_CUDA_GET = torch.Tensor.is_cuda.__get__
_DATA_SET = torch.Tensor.data.__set__
_METADATA = {torch._has_compatible_shallow_copy_type}  # compares layouts: no arithmetic, any devices
_FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.eye, torch.rand, torch.randn,
              torch.randint, torch.tensor, torch.as_tensor, torch.linspace, torch.logspace, torch.randperm,
              torch.empty_strided, torch.scalar_tensor, torch.zeros_like, torch.ones_like, torch.full_like,
              torch.empty_like, torch.rand_like, torch.randn_like}
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_, torch.Tensor.index_put}


class DeviceMix(RuntimeError):
    """A call mixed tensors on the (virtual) device with cpu tensors: CUDA would refuse it."""


def on_virtual(t) -> bool:
    """Whether t is a tensor marked as on the virtual device."""
    return isinstance(t, torch.Tensor) and getattr(t, _MARK, False)


def _virtual(device) -> bool | None:
    """True for the virtual device (or any accelerator name), False for the cpu, None for no device."""
    if device is None:
        return None
    d = torch.device(device) if isinstance(device, (str, int)) else device
    return d.type != "cpu" or d.index is not None


def _marked(out, mark: bool):
    def one(t):
        if isinstance(t, torch.Tensor) and getattr(t, _MARK, False) != mark:
            setattr(t, _MARK, mark)
        return t
    return tree_map(one, out)


class VirtualDevice(TorchFunctionMode):
    """``with VirtualDevice(): fn(device=VIRTUAL)``: runs fn on the CPU, raising DeviceMix where a GPU run
    would fail for tensors on two devices (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == _DEVICE_GET:
            return VIRTUAL if on_virtual(args[0]) else torch.device("cpu")
        if func == _IS_CUDA_GET:
            return on_virtual(args[0])
        if func in _FACTORIES:
            return self._factory(func, args, kwargs)
        if func == _DATA_SET:  # t.data = v (nn.Module.to): t is now where v is
            func(*args, **kwargs)
            _marked(args[0], on_virtual(args[1]))
            return None
        if func in _METADATA:
            return func(*args, **kwargs)
        if func is torch.Tensor.cpu:
            return self._moved(func(*args, **kwargs), args[0], False)
        if func is torch.Tensor.cuda:
            return self._moved(args[0], args[0], True)
        if func is torch.Tensor.to:
            return self._to(args, kwargs)
        if func is torch.Tensor.numpy and on_virtual(args[0]):
            raise DeviceMix("numpy() of a tensor on the device (move it to the cpu first)")
        on = self._check(func, args, kwargs)
        out = func(*args, **kwargs)
        return _marked(out, True) if on else out

    @staticmethod
    def _check(func, args, kwargs) -> bool:
        """Whether the call reads device tensors; DeviceMix where it also reads cpu tensors (not 0-dim)."""
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        dev = [t for t in tensors if on_virtual(t)]
        cpu = [t for t in tensors if not on_virtual(t) and t.dim() > 0]
        if func is torch.Tensor.copy_:  # across devices is fine; the destination stays where it is
            return on_virtual(args[0])
        if not dev or not cpu:
            return bool(dev)
        if func in _INDEXING and on_virtual(args[0]):  # cpu indices into a device tensor: allowed
            value = args[2] if len(args) > 2 else None
            if not (isinstance(value, torch.Tensor) and not on_virtual(value) and value.dim() > 0):
                return True
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", str(func))
        raise DeviceMix(f"{name} reads tensors on the device {[tuple(t.shape) for t in dev]} and on the cpu "
                        f"{[tuple(t.shape) for t in cpu]}")

    @staticmethod
    def _factory(func, args, kwargs):
        device = kwargs.get("device")
        if device is not None:
            kwargs = dict(kwargs, device="cpu")
        out = func(*args, **kwargs)
        want = _virtual(device)
        if want is None:  # no device: a *_like / as_tensor of a tensor keeps its device, else the cpu
            want = bool(args) and on_virtual(args[0])
        return VirtualDevice._moved(out, args[0] if args else None, bool(want))

    @staticmethod
    def _to(args, kwargs):
        device, other = kwargs.get("device"), None
        rest = []
        for a in args[1:]:
            if isinstance(a, (str, torch.device)) or (isinstance(a, int) and not isinstance(a, bool)):
                device, a = a, "cpu"
            elif isinstance(a, torch.Tensor):
                other = a
            rest.append(a)
        if "device" in kwargs:
            kwargs = dict(kwargs, device="cpu")
        out = torch.Tensor.to(args[0], *rest, **kwargs)
        if other is not None:
            want = on_virtual(other)
        else:
            want = on_virtual(args[0]) if device is None else bool(_virtual(device))
        return VirtualDevice._moved(out, args[0], want)

    @staticmethod
    def _moved(out, src, want: bool):
        """out marked `want`; a new tensor object where the move returned its source unchanged (a move to
        another device is a new tensor on GPU too)."""
        if out is src and isinstance(src, torch.Tensor) and on_virtual(src) != want:
            out = out.view_as(out) if out.requires_grad else out.detach()
        return _marked(out, want)


@contextmanager
def cuda_is_virtual():
    """Inside VirtualDevice, with "cuda" and "auto" resolving to VIRTUAL (certify/device.py resolve_device):
    the CLI's and the API's `--device cuda` paths run on the stand-in."""
    from unittest import mock

    from ..certify import device as device_mod

    real = device_mod.resolve_device

    def resolve(device):
        return VIRTUAL if device in ("cuda", "auto") else real(device)

    with mock.patch.object(device_mod, "resolve_device", resolve), VirtualDevice():
        yield


__all__ = ["VIRTUAL", "VirtualDevice", "DeviceMix", "on_virtual", "cuda_is_virtual"]
