"""Shared by every Python test under tests/: the helpers in tests/support are importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
