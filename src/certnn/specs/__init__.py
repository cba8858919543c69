"""Specifications: what a certificate is about (input sets and unsafe output sets)."""
from .vnnlib import (DEFAULT_MAX_DISJUNCTS, InputBox, OutputConjunction, Region, VnnlibProperty, load_vnnlib,
                     parse_vnnlib, property_violated, read_counterexample, write_counterexample)

__all__ = ["DEFAULT_MAX_DISJUNCTS", "InputBox", "OutputConjunction", "Region", "VnnlibProperty", "load_vnnlib",
           "parse_vnnlib", "property_violated", "read_counterexample", "write_counterexample"]
