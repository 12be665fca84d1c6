"""Where the demo model shipped inside the package lives."""

from pathlib import Path

# The small T6 trained on Tang/Song poems and Chinese dialogues (chat form) by scripts/train_demo.py,
# exported with --form chat and int8 graphs.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "demo" / "t6-demo.mof"
