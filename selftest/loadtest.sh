#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# selftest/loadtest.sh - run selftest/loadtest.py with the project's venv python; all
# arguments are passed on (see --help).
source "$(dirname "$0")/common.sh"
exec "$VENV/bin/python" "$REPO/selftest/loadtest.py" "$@"
