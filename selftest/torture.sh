#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# selftest/torture.sh - smbtorture against [cephrs] and [cephnew] and their comparison
# (selftest/torture.py) -> docs/smbtorture.md. Arguments are passed on (see --help).
source "$(dirname "$0")/common.sh"
exec "$VENV/bin/python" "$REPO/selftest/torture.py" "$@"
