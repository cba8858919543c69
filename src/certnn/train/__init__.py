"""Training: plain classifiers (simple.py) and verified robust training (robust.py, margins.py)."""
from .robust import EpochLog, RobustTrainConfig, TrainLog, schedule, train_robust

__all__ = ["RobustTrainConfig", "TrainLog", "EpochLog", "schedule", "train_robust"]
