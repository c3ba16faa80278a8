#!/usr/bin/env bash
# Check this package against the NEWEST diffusers release, ignoring the upper bound in pyproject.toml.
#
# Why: the backbone adapters (SVD UNet / Wan transformer hooks), LoRA on them, the latent codecs (diffusers VAEs),
# the pipelines (DiffusionPipeline subclasses, ModelMixin / ConfigMixin save and load) and the EMA (diffusers'
# training_utils.EMAModel) use diffusers internals, so pyproject.toml caps diffusers at the last release tested.
# Run this before raising the cap: when it passes, the cap can move past the version it prints.
#
# Not part of CI (.ci/run): it downloads packages, and its answer changes whenever diffusers makes a release.
#
# Usage: scripts/check_newest_diffusers.sh [--inherit] [--keep] [PYTEST_ARGS...]
#   default    a fresh throwaway venv: pip install -e ".[dev]" (the capped diffusers), then
#              pip install --upgrade diffusers (pip then warns that neural-render's cap is not met: that is the
#              point), then the tests below. Downloads a whole environment (torch included).
#   --inherit  the throwaway venv sees the packages of $PYTHON's environment (nothing is downloaded again) and gets
#              only the newest diffusers, and whatever it needs newer, installed over them.
#   --keep     keep the venv (its path is printed) instead of deleting it.
#   PYTEST_ARGS go to pytest (e.g. -x, -k lora).
# Environment: PYTHON (interpreter the venv is made from; default python3), VENV_DIR (default: a new temp folder).
# Exit status: pytest's (0: the newest diffusers passes the diffusers-facing tests); 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

inherit=0 keep=0
pytest_args=()
for arg in "$@"; do
  case "$arg" in
    --inherit) inherit=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) pytest_args+=("$arg") ;;
  esac
done

PYTHON=${PYTHON:-python3}
venv=${VENV_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/newest_diffusers.XXXXXX")}
cleanup() { if [ "$keep" = 1 ]; then echo "check_newest_diffusers: venv kept at $venv"; else rm -rf "$venv"; fi; }
trap cleanup EXIT

"$PYTHON" -m venv "$venv"
py="$venv/bin/python"
if [ "$inherit" = 1 ]; then
  # addsitedir (not a plain path line) so the parent's own .pth files -- e.g. this repo's editable install -- apply;
  # the venv's site-packages stay first on sys.path, so what is installed below shadows the parent's copy
  parent=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  own=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$parent')" > "$own/inherit_parent_env.pth"
else
  "$py" -m pip install -q --upgrade pip
  "$py" -m pip install -q -e ".[dev]"
fi
"$py" -m pip install -q --upgrade diffusers  # pip warns that neural-render's cap is not met (exit status 0)
"$py" - <<'EOF'
import importlib.metadata as md
import diffusers, peft, torch
cap = next(r for r in md.requires("neural-render") if r.startswith("diffusers"))
print(f"check_newest_diffusers: diffusers {diffusers.__version__} ({diffusers.__file__}); pyproject: {cap}; "
      f"torch {torch.__version__}, peft {peft.__version__}")
EOF

# the tests that exercise diffusers internals (those present in this checkout)
tests=()
for t in tests/models/test_backbone.py tests/models/test_backbone_loading.py tests/models/test_codec.py \
         tests/models/test_lora.py tests/models/test_ic_lora.py tests/models/test_domain_shifter.py \
         tests/models/test_pass_embedding.py tests/models/test_ema.py tests/models/test_ema_backend.py \
         tests/tasks/test_system.py tests/pipelines tests/diffusion_renderer; do
  [ -e "$t" ] && tests+=("$t")
done
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$py" -m pytest -q -p no:cacheprovider "${tests[@]}" ${pytest_args[@]+"${pytest_args[@]}"}
