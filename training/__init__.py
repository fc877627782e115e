"""Training: `train(cfg)` runs one configured experiment and leaves its record (see training.records)."""

from training.config import check_config
from training.loop import train

__all__ = ["check_config", "train"]
