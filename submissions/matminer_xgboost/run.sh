#!/usr/bin/env bash
# Reproduce this submission from the repository root.
set -euo pipefail
python -m harness run matminer_xgboost
