"""Model families certnn trains itself (`certnn train`) and their bundles (one weights-only .pt file)."""
from .bundle import BUNDLE_FORMAT, read_bundle, save_bundle
from .image import ImageModelConfig, build_image_model, save_image_model
from .text import TextClassifier, TextEncoder, TextModelConfig, load_text_model, save_text_model, text_graph

__all__ = ["BUNDLE_FORMAT", "read_bundle", "save_bundle", "ImageModelConfig", "build_image_model", "save_image_model",
           "TextClassifier", "TextEncoder", "TextModelConfig", "load_text_model", "save_text_model", "text_graph"]
