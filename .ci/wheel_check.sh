#!/usr/bin/env bash
# The installed wheel, not the source tree, run from another directory: `mmrl explain` must give
# EuroSAT's MMRL B2N config the same values as the editable install, read from the wheel's own
# configs.  Runs in .ci/run's venv: the wheel goes into a --target folder without its dependencies,
# which (torch ...) come from that venv.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# built from a copy of the checkout's files, so no build/ folder left by an earlier build leaks in
mkdir "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && tar --null -T - -cf -) |
  tar -C "$work/src" -xf -
python -m pip wheel -q --no-deps -w "$work/wheelhouse" "$work/src"
python -m pip install -q --no-deps --target "$work/site" "$work"/wheelhouse/mmrl-*.whl

explain=(explain --changed --trainer MMRL --dataset-config-file configs/datasets/eurosat.yaml
         --config-file configs/trainers/MMRL/vit_b16.yaml TASK B2N)
(cd "$repo" && python -m mmrl "${explain[@]}") > "$work/editable.txt"
(cd "$work" && PYTHONPATH="$work/site" "$work/site/bin/mmrl" "${explain[@]}") > "$work/wheel.txt"

python - "$work" <<'PY'
import re, sys
work = sys.argv[1]

def table(name):  # {key: (value, layer)} from explain's three columns
    rows = [re.split(r"\s{2,}", line.strip()) for line in open(f"{work}/{name}.txt")][2:]
    return {r[0]: (r[1], r[2]) for r in rows}

editable, wheel = table("editable"), table("wheel")
values = lambda t: {k: v for k, (v, _) in t.items()}
if values(wheel) != values(editable):
    sys.exit(f"the wheel resolves other values than the editable install:\n{values(wheel)}\n{values(editable)}")
for key, want in (("TRAINER.MMRL.REP_DIM", "2048"), ("TRAINER.MMRL.REG_WEIGHT", "0.01")):
    if wheel.get(key, ("", ""))[0] != want or not wheel[key][1].startswith("override:"):
        sys.exit(f"{key}: {wheel.get(key)} from the wheel, expected {want} from the overrides file")
outside = [f"{k}: {layer}" for k, (_, layer) in wheel.items()
           if layer.startswith(("trainer:", "dataset:")) and not layer.split(":", 1)[1].startswith(f"{work}/site/mmrl/configs/")]
if outside:
    sys.exit("the wheel run read config files from outside the wheel:\n" + "\n".join(outside))
print(f"wheel check: {len(wheel)} changed keys resolve as in the editable install, from the wheel's configs")
PY
