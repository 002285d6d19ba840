#!/usr/bin/env python3
"""Run every end-to-end test (tests/e2e/test_*.py).  E2E_ONLY=substring[,substring] picks some."""

import glob
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import khyve_e2e  # noqa: E402

mods = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_*.py")))
for m in mods:
    importlib.import_module(os.path.splitext(os.path.basename(m))[0])
sys.exit(khyve_e2e.main(mods))
