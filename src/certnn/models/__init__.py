"""Model families certnn trains itself (`certnn train`) and their bundles (one weights-only .pt file)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .bundle import BUNDLE_FORMAT, read_bundle, save_bundle  # noqa: F401
    from .image import ImageModelConfig, build_image_model, save_image_model  # noqa: F401
    from .text import TextClassifier, TextEncoder, TextModelConfig, load_text_model, save_text_model, text_graph  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "BUNDLE_FORMAT": ".bundle", "read_bundle": ".bundle", "save_bundle": ".bundle", "ImageModelConfig": ".image",
    "build_image_model": ".image", "save_image_model": ".image", "TextClassifier": ".text", "TextEncoder": ".text",
    "TextModelConfig": ".text", "load_text_model": ".text", "save_text_model": ".text", "text_graph": ".text",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
