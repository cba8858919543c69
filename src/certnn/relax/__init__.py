"""Relaxation math: pure functions of bounds returning lines or planes (no graphs, layers or domains)."""
from .products import mccormick_planes, mul_parallel_planes, sigmoid_mul_planes, sigmoid_tanh_planes
from .relu import hardtanh_relaxation, leaky_relu_relaxation, relu_relaxation
from .sshape import (ARCTAN, SIGMOID, SSHAPES, TANH, SShape, exact_offsets, parallel_relaxation, sshape_lines,
                     sshape_relaxation, sshape_slope_range, sshape_slopes)
from .types import BLEND_KAPPA, LinearRelaxation, PlaneRelaxation, safety_margin

__all__ = ["LinearRelaxation", "PlaneRelaxation", "safety_margin", "BLEND_KAPPA", "relu_relaxation",
           "leaky_relu_relaxation", "hardtanh_relaxation", "SShape", "SIGMOID", "TANH", "ARCTAN", "SSHAPES",
           "sshape_relaxation", "sshape_slopes", "sshape_lines", "sshape_slope_range",
           "parallel_relaxation", "exact_offsets", "sigmoid_tanh_planes", "sigmoid_mul_planes", "mccormick_planes",
           "mul_parallel_planes"]
