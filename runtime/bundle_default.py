"""Where the demo model shipped inside the package lives."""

from pathlib import Path

# The small T6 trained on Tang/Song poems by scripts/train_demo.py, exported with int8 graphs.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "demo" / "t6-demo.mof"
