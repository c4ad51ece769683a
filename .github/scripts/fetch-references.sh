#!/usr/bin/env bash
# Fetch the published JARVIS-Leaderboard contributions that the leaderboard's reference
# rows are scored from: usnistgov/jarvis_leaderboard at commit 57afc55 (the copy in
# ../shared/data/jarvis_leaderboard/contributions on the development machines), only the
# files listed in .github/reference-contributions.sha256, verified byte for byte.
# Usage: .github/scripts/fetch-references.sh DEST   (then KSPACING_REFERENCE_DIR=DEST)
set -euo pipefail
dest=${1:?usage: $0 DEST}
repo=${JARVIS_LEADERBOARD_GIT:-https://github.com/usnistgov/jarvis_leaderboard.git}  # overridable for tests
commit=${JARVIS_LEADERBOARD_COMMIT:-57afc55}
sums="$(cd "$(dirname "$0")/.." && pwd)/reference-contributions.sha256"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Commits only (no trees/blobs) so the short hash resolves; checkout fetches the listed files.
git clone --quiet --filter=tree:0 --no-checkout "$repo" "$work/jl"
cut -c67- "$sums" | sed 's|^|/jarvis_leaderboard/contributions/|' |
  git -C "$work/jl" sparse-checkout set --no-cone --stdin
git -C "$work/jl" -c advice.detachedHead=false checkout --quiet "$commit"
mkdir -p "$dest"
cp -R "$work/jl/jarvis_leaderboard/contributions/." "$dest/"
(cd "$dest" && sha256sum --check --quiet "$sums")
echo "reference contributions: $(cut -c67- "$sums" | cut -d/ -f1 | sort -u | wc -l) models in $dest (checksums ok)"
