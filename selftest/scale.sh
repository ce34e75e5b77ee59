#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# selftest/scale.sh - the scale curve (selftest/scale.py) with the project's venv python:
# loadtest.py against [cephrs], [cephnew], [plain] for N = 50..2000 -> docs/scale.md, docs/scale.png.
# All arguments are passed on (see --help).
source "$(dirname "$0")/common.sh"
exec "$VENV/bin/python" "$REPO/selftest/scale.py" "$@"
