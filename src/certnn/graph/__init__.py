"""Model import: PyTorch (and ONNX) to the certnn IR."""
from .ir import Graph, GraphBuilder, Input, Node

__all__ = ["Graph", "GraphBuilder", "Input", "Node"]
