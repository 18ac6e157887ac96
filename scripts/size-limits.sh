#!/usr/bin/env bash
# Production files and functions within their size limits (see scripts/size_limits.py).
set -euo pipefail
exec python3 "$(dirname "$0")/size_limits.py"
