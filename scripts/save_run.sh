#!/usr/bin/env bash
# Save a finished DVC experiment's results into the repo, so reports and the verdict can be
# rendered again without the experiment refs:
#   scripts/save_run.sh EXPERIMENT DEST "COMMAND THAT MADE IT"
# DEST gets the run's metrics/details/*.json (probe.json too when the run has the probe stage),
# params.yaml, its training loss curve (loss.tsv), COMMIT (the code it ran: the experiment's
# baseline), EXPERIMENT (its ref) and command.txt, and the per-question prediction records of
# both eval stages (every candidate's score per instrument and stem, gzipped) when the local DVC
# cache holds them, so anyone can re-analyse.
set -euo pipefail
name=$1; dest=$2; command=${3:-}
# An experiment's ref is refs/exps/<baseline[:2]>/<baseline[2:]>/<name>: the same name run on
# two commits gives two refs. Take the one run on this commit (HEAD); else the only one.
head=$(git rev-parse HEAD)
refs=$(git for-each-ref refs/exps --format='%(objectname) %(refname)' | awk -v n="/$name\$" '$2 ~ n')
rev=$(echo "$refs" | awk -v h="refs/exps/${head:0:2}/${head:2}/" 'index($2, h) == 1 {print $1}')
if [ -z "$rev" ]; then
  if [ "$(echo "$refs" | grep -c .)" -gt 1 ]; then
    echo "several experiments named $name on other commits; check out the one to save:" >&2
    echo "$refs" >&2; exit 1
  fi
  rev=$(echo "$refs" | awk '{print $1}')
fi
if [ -z "$rev" ]; then echo "no experiment named $name (dvc exp list)" >&2; exit 1; fi
tmp=$(mktemp -d "$(dirname "$dest")/.save.XXXXXX")
for stage in filter_tokens build_dataset train eval_spelling eval_position probe publish; do
  git show "$rev:metrics/details/$stage.json" > "$tmp/$stage.json" 2>/dev/null || rm -f "$tmp/$stage.json"
done
git show "$rev:params.yaml" > "$tmp/params.yaml"
git show "$rev:dvclive/train/plots/metrics/loss.tsv" > "$tmp/loss.tsv" 2>/dev/null || rm -f "$tmp/loss.tsv"
cache=$(dvc cache dir 2>/dev/null || echo .dvc/cache)   # a clone may share another repo's cache
for stage in eval_spelling eval_position; do
  md5=$(git show "$rev:dvc.lock" | python -c "import sys, yaml
outs = yaml.safe_load(sys.stdin)['stages'].get('$stage', {}).get('outs', [])
print(next((o['md5'] for o in outs if o['path'] == 'data/predictions/$stage.jsonl'), ''))" 2>/dev/null || true)
  cached="$cache/files/md5/${md5:0:2}/${md5:2}"
  if [ -n "$md5" ] && [ -f "$cached" ]; then
    gzip -9 -n -c "$cached" > "$tmp/predictions_$stage.jsonl.gz"
  else
    echo "note: $stage predictions not in the local DVC cache; not saved" >&2
  fi
done
git rev-parse "$rev^" > "$tmp/COMMIT"
echo "$rev" > "$tmp/EXPERIMENT"
echo "$command" > "$tmp/command.txt"
rm -rf "$dest" && mv "$tmp" "$dest"   # whole folder or nothing
echo "saved $name -> $dest"
