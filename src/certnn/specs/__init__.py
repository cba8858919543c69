"""Specifications: what a certificate is about (input sets and unsafe output sets)."""
from .frames import frame_scale, parse_frame_eps, parse_frames
from .lp import LpBall
from .vnnlib import (DEFAULT_MAX_DISJUNCTS, InputBox, OutputConjunction, Region, VnnlibProperty, load_vnnlib,
                     parse_vnnlib, property_violated, read_counterexample, write_counterexample)

__all__ = ["LpBall", "frame_scale", "parse_frames", "parse_frame_eps", "DEFAULT_MAX_DISJUNCTS", "InputBox", "OutputConjunction", "Region", "VnnlibProperty",
           "load_vnnlib", "parse_vnnlib", "property_violated", "read_counterexample", "write_counterexample"]
