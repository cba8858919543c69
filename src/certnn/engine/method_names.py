"""Names of the built-in methods, without importing the engine (for `certnn --help`, which must not import
torch). `methods.METHODS` is the registry; tests check that the two agree."""
from __future__ import annotations

BUILTIN_METHODS: tuple[str, ...] = ("alpha-crown", "certrnn", "cnncert", "crown", "crown-ibp", "deepz", "fastlin",
                                    "ibp", "lipschitz", "lp", "milp", "popqorn")
