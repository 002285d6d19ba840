#!/bin/sh
# End-to-end tests: boot the test guest under khyve and check what it does.
exec python3 "$(dirname "$0")/../tests/e2e/run.py"
