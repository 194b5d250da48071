"""Test-wide settings: no progress bars (a test's output is not a terminal to watch)."""

import os

os.environ.setdefault("KADAM_PROGRESS", "0")
