"""Settings of complete certification (`--complete`), apart from complete.py so that the CLI's parser reads
its defaults without importing torch."""
from __future__ import annotations

from dataclasses import dataclass

from ..bab.config import BabConfig
from ..config import Config
from ..errors import ConfigError


@dataclass(frozen=True)
class CompleteConfig(Config):
    """timeout: seconds of branch and bound per sample (the samples of a batch share their total; a
    radius search spends it at every step). attack: run PGD before the search. bab: its settings."""

    timeout: float = 30.0
    attack: bool = True
    bab: BabConfig = BabConfig()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.timeout > 0:
            raise ConfigError("complete timeout must be > 0 seconds")
