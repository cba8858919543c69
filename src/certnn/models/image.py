"""Small image classifiers for `certnn train --task mnist|digits`: a ReLU MLP or a two-conv CNN.

Both take images (B, C, H, W) (the MLP starts with nn.Flatten), so one bundle serves
``certnn radius --model m.pt --data d.npz`` with x of shape (N, C, H, W) (or flat, with --input-shape).

* ``mlp``: Flatten, ``layers`` x (Linear(hidden), ReLU), Linear(K);
* ``cnn``: Conv2d(C, 16, 3, stride 2, padding 1), ReLU, Conv2d(16, 32, 3, stride 2, padding 1), ReLU,
  Flatten, Linear(hidden), ReLU, Linear(K) (28x28 -> 14x14 -> 7x7; 8x8 -> 4x4 -> 2x2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..config import Config
from ..errors import ConfigError, ModelImportError
from .bundle import load_state, save_bundle


@dataclass(frozen=True)
class ImageModelConfig(Config):
    arch: str = "mlp"
    input_shape: tuple[int, int, int] = (1, 28, 28)
    layers: int = 2
    hidden: int = 100
    num_classes: int = 10

    choices: ClassVar[dict[str, tuple]] = {"arch": ("mlp", "cnn")}

    def __post_init__(self) -> None:
        super().__post_init__()
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"ImageModelConfig.input_shape must be (C, H, W), got {self.input_shape}")
        object.__setattr__(self, "input_shape", shape)
        for name in ("layers", "hidden", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"ImageModelConfig.{name} must be an integer >= 1, got {v!r}")


def build_image_model(config: ImageModelConfig) -> nn.Sequential:
    c, h, w = config.input_shape
    if config.arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.ReLU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.num_classes))
        return nn.Sequential(*layers)
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    h4, w4 = (h2 + 1) // 2, (w2 + 1) // 2
    return nn.Sequential(nn.Conv2d(c, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * h4 * w4, config.hidden), nn.ReLU(),
                         nn.Linear(config.hidden, config.num_classes))


def save_image_model(path: str | Path, model: nn.Module, config: ImageModelConfig, meta: dict[str, Any]) -> Path:
    cfg = config.to_dict()
    cfg["input_shape"] = list(config.input_shape)
    return save_bundle(path, "image", cfg, model, meta)


def image_model_from_bundle(doc: dict[str, Any], where: str = "bundle") -> nn.Sequential:
    try:
        cfg = dict(doc["config"])
        if "input_shape" in cfg:
            cfg["input_shape"] = tuple(cfg["input_shape"])
        config = ImageModelConfig.from_mapping(cfg)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelImportError(f"{where}: bad model config: {exc}") from None
    model = build_image_model(config)
    load_state(model, doc["state_dict"], where)
    return model.eval()
