"""crossvit: CrossViT experiments with PyTorch Lightning and Hydra."""

from pathlib import Path

# The Hydra config tree; with `pip install -e .` it sits beside src/.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
