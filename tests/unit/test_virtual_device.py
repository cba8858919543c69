"""certnn/testing/virtual_device.py: the cpu standing in for an accelerator flags what CUDA refuses (tensors
on two devices in one call, numpy() of a device tensor) and lets through what CUDA allows (0-dim cpu
tensors, cpu indices into a device tensor, copies across devices, explicit moves)."""
from __future__ import annotations

import pytest
import torch

from certnn.testing.virtual_device import VIRTUAL, DeviceMix, VirtualDevice, on_virtual


def test_marks_follow_factories_moves_and_results():
    with VirtualDevice():
        a = torch.zeros(3, device=VIRTUAL)
        b = torch.ones(3).to(VIRTUAL)
        c = (a + b).exp()
        assert on_virtual(a) and on_virtual(b) and on_virtual(c)
        assert c.device == VIRTUAL and c.is_cuda
        d = torch.zeros(3, device=c.device)  # a device read off a tensor
        e = torch.zeros_like(c)
        assert on_virtual(d) and on_virtual(e)
        assert not on_virtual(c.cpu()) and not on_virtual(c.to("cpu")) and c.cpu().device == torch.device("cpu")
        assert on_virtual(torch.ones(2).to(c)) and on_virtual(torch.as_tensor(c, dtype=torch.float64))
        assert not on_virtual(torch.zeros(3)) and on_virtual(c)  # the move left the source on the device


@pytest.mark.parametrize("call", [
    lambda d, h: d + h,
    lambda d, h: torch.where(h > 0, d, d),
    lambda d, h: torch.cat([d, h]),
    lambda d, h: h.index_select(0, torch.zeros(1, dtype=torch.long, device=VIRTUAL)),
    lambda d, h: d.index_select(0, torch.zeros(1, dtype=torch.long)),
    lambda d, h: h[torch.zeros(1, dtype=torch.long, device=VIRTUAL)],
    lambda d, h: d.__setitem__(slice(None), h),
    lambda d, h: d.numpy(),
])
def test_mixes_are_refused(call):
    with VirtualDevice():
        d, h = torch.rand(4, device=VIRTUAL), torch.rand(4)
        with pytest.raises(DeviceMix):
            call(d, h)


def test_what_cuda_allows_passes():
    with VirtualDevice():
        d = torch.rand(4, device=VIRTUAL)
        idx, mask = torch.tensor([0, 2]), torch.tensor([True, False, True, False])
        assert on_virtual(d[idx]) and on_virtual(d[mask]) and on_virtual(d + torch.tensor(2.0))
        d[idx] = torch.zeros(2, device=VIRTUAL)
        d[mask] = 1.0
        h = torch.empty(4)
        h.copy_(d)
        assert torch.equal(h, d.cpu()) and not on_virtual(h)
        assert on_virtual(d.detach().clone().requires_grad_(True) * 2)


def test_modules_moved_with_to_live_on_the_device():
    with VirtualDevice():
        lin = torch.nn.Linear(3, 2).to(VIRTUAL)
        assert on_virtual(lin.weight) and lin.weight.device == VIRTUAL
        assert on_virtual(lin(torch.rand(4, 3, device=VIRTUAL)))
        with pytest.raises(DeviceMix):
            lin(torch.rand(4, 3))
        assert not on_virtual(lin.cpu().weight)
