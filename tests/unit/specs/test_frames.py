import pytest
import torch

from certnn.certify.radius import CertifyConfig, Certifier
from certnn.errors import SpecError
from certnn.specs.frames import frame_scale, parse_frame_eps, parse_frames


def test_frame_scale_shapes_and_values():
    s = frame_scale((4, 3), [0, -1], [1.0, 0.5])
    assert s.shape == (4, 3)
    assert torch.equal(s[:, 0], torch.tensor([1.0, 0.0, 0.0, 0.5], dtype=torch.float64))
    assert torch.equal(frame_scale((2, 2), None), torch.ones(2, 2, dtype=torch.float64))
    assert torch.equal(frame_scale((3, 2), 1, 2.0)[1], torch.tensor([2.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("args", [((4, 3), [4], None), ((4, 3), [1, 1], None), ((4, 3), [0, 1], [1.0]),
                                  ((4, 3), [0], [-1.0]), ((12,), [0], None), ((4, 3), [], None)])
def test_frame_scale_errors(args):
    with pytest.raises(SpecError):
        frame_scale(*args)


def test_parsers():
    assert parse_frames("0,3,5") == (0, 3, 5) and parse_frames("all") is None and parse_frames(None) is None
    assert parse_frame_eps("1,0.5") == (1.0, 0.5)
    with pytest.raises(SpecError):
        parse_frames("a,b")
    with pytest.raises(SpecError):
        parse_frame_eps("x")


def test_certifier_frames_field_builds_the_scale():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 2)).double()
    cert = Certifier(model, CertifyConfig(frames=(1,), frame_eps=(0.5,)), (3, 2))
    assert torch.equal(cert.scale, torch.tensor([[0, 0], [0.5, 0.5], [0, 0]], dtype=torch.float64))
    cfg = CertifyConfig.from_mapping({"frames": [0, 2]})
    assert cfg.frames == (0, 2)
    # the radius for one frame is at least the radius for all frames (a subset of the perturbations)
    x = torch.rand(4, 3, 2, dtype=torch.float64)
    y = model(x).argmax(1)
    r_all = Certifier(model, CertifyConfig(norm="inf"), (3, 2)).radius(x, y).certified_radius
    r_one = Certifier(model, CertifyConfig(norm="inf", frames=(1,)), (3, 2)).radius(x, y).certified_radius
    assert (r_one >= r_all * (1 - 1e-3)).all() and (r_one > r_all).any()
