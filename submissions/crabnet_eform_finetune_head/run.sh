#!/usr/bin/env bash
# Reproduce this folder's submission files (needs the kspacing-bench checkout this folder sits in; see CONTRIBUTING.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m harness run crabnet_eform_finetune_head
