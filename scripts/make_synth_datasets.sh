#!/usr/bin/env bash
# Make the synthetic datasets used to train and evaluate the tiny inverse model (and, later, the forward model).
#
#   scripts/make_synth_datasets.sh [ROOT]          ROOT defaults to data_cache/ (gitignored)
#
# Splits (issue #22, neural_render/synth/splits.py): VAL is for every choice (model selection, ablations, README
# comparisons); TEST is scored once per shipped model. The env maps that were called "test" before issue #22 were
# used for model selection, so they are now the VAL maps (data/envmaps/split.json "val"); the sets below made with
# them keep their old folder names (synth_test_64*, synth_long_64: read by scripts/train_*_tiny.py and named in the
# shipped eval JSONs) but ARE VALIDATION SETS. Switching their flag from `--envmaps test` to `--envmaps val` leaves
# them bit-identical (same maps, same seed; synth.json records map names, not the flag). The true test set is
# synth_split_test_64 (--split test: Blender CC0 maps, held-out shape / material families and sky ranges, seed 7000).
#
# Writes (each a `neural-render synth` dataset folder; re-running skips finished clips, so it is resumable):
#   ROOT/synth_train_64   train env maps only (--envmaps train), seed 1000, 512 clips x 8 frames, 64x64, 16 spp
#   ROOT/synth_val_64     validation: train env maps, seed 4000 (unseen shape seeds), 24 clips x 8 frames: model
#                         selection (early stopping) of scripts/train_inverse_tiny.py; never trained on
#   ROOT/synth_test_64    VALIDATION (name kept, see above): val env maps (--envmaps val, the former test maps), seed
#                         2000 (unseen shape seeds), 24 clips x 8 frames
#   ROOT/synth_test_64_large  VALIDATION, the set above with more power: the same generator (val env maps, seed 2000),
#                         LARGE_TEST_CLIPS (96) clips, so its first 24 clips ARE synth_test_64 (bit-identical); with
#                         24 clips the per-clip paired test misses improvements of a few hundredths of RMSE
#   ROOT/synth_long_64    VALIDATION window test: val env maps, seed 3000, 2 clips x 64 frames
#   ROOT/synth_train_64_sky   procedural HDR skies (--sky: random sun, sky and ground colours; no env map file),
#                         seed 5000, SKY_CLIPS clips x 8 frames (only when SKY_CLIPS > 0; default 0): extra
#                         lighting variety for `scripts/train_inverse_tiny.py --sky` (an experiment; the shipped
#                         model does not use it)
#   ROOT/synth_train_64_rvar1  the first RVAR_CLIPS scenes of synth_train_64 with every surface's roughness re-drawn
#                         (--roughness-variant 1; only when RVAR_CLIPS > 0, default 0): pairs of clips that differ
#                         only in roughness, for `scripts/train_inverse_tiny.py --roughness-variants` (an experiment)
#   ROOT/synth_test_64_spp256  VALIDATION: the scenes of synth_test_64 path-traced at 256 spp (HELDOUT_SPP): the
#                         converged reference of `neural-render eval forward` (16-spp noise alone caps PSNR near 29 dB)
#   ROOT/synth_split_val_64   --split val: val env maps + the val held-out families (extruded shapes, noise textures),
#                         seed 4000, SPLIT_VAL_CLIPS (24) clips x 8 frames: for choices about generalisation
#   ROOT/synth_split_test_64  --split test: the TEST split (Blender env maps, revolved / composite shapes, marble /
#                         wood textures), seed 7000, SPLIT_TEST_CLIPS (24) clips x 8 frames: score each shipped model
#                         on it ONCE (and report that number); never use it to choose anything
# Every clip stores RGB + G-buffers (frames/NNNNNN.exr), GT forward flow (frames/flow_NNNNNN.exr) and object ids.
# Sizes can be overridden with env vars: TRAIN_CLIPS, SKY_CLIPS, RVAR_CLIPS, VAL_CLIPS, TEST_CLIPS, LARGE_TEST_CLIPS,
# LONG_CLIPS, SPLIT_VAL_CLIPS, SPLIT_TEST_CLIPS, SIZE, SPP, WORKERS.
# Time on a 2-core CPU with the llvm_ad_rgb variant: 26 frames/s with 2 workers at 64x64 / 16 spp (measured
# 2026-11-24: 1536 clips x 8 frames in 7.8 min), so ~3 min for the 512-clip train set (scalar_rgb: not timed).
set -euo pipefail

ROOT="${1:-data_cache}"
SIZE="${SIZE:-64x64}"
SPP="${SPP:-16}"
WORKERS="${WORKERS:-2}"
TRAIN_CLIPS="${TRAIN_CLIPS:-512}"
SKY_CLIPS="${SKY_CLIPS:-0}"
RVAR_CLIPS="${RVAR_CLIPS:-0}"
TEST_CLIPS="${TEST_CLIPS:-24}"
LARGE_TEST_CLIPS="${LARGE_TEST_CLIPS:-96}"
VAL_CLIPS="${VAL_CLIPS:-24}"
LONG_CLIPS="${LONG_CLIPS:-2}"
SPLIT_VAL_CLIPS="${SPLIT_VAL_CLIPS:-24}"
SPLIT_TEST_CLIPS="${SPLIT_TEST_CLIPS:-24}"
TAG="${SIZE%%x*}"

mkdir -p "$ROOT"
common=(--size "$SIZE" --spp "$SPP" --workers "$WORKERS" --no-progress)
# validation sets under their pre-#22 names (the former "test" maps are the val maps)
neural-render synth --out "$ROOT/synth_test_${TAG}" --envmaps val --seed 2000 --clips "$TEST_CLIPS" --frames 8 "${common[@]}"
neural-render synth --out "$ROOT/synth_test_${TAG}_spp${HELDOUT_SPP:-256}" --envmaps val --seed 2000 --clips "$TEST_CLIPS" \
  --frames 8 --size "$SIZE" --spp "${HELDOUT_SPP:-256}" --workers "$WORKERS" --no-progress
neural-render synth --out "$ROOT/synth_test_${TAG}_large" --envmaps val --seed 2000 --clips "$LARGE_TEST_CLIPS" --frames 8 "${common[@]}"
neural-render synth --out "$ROOT/synth_long_${TAG}" --envmaps val --seed 3000 --clips "$LONG_CLIPS" --frames 64 "${common[@]}"
# the split datasets of neural_render/synth/splits.py (seeds, maps, families and sky ranges from --split)
neural-render synth --out "$ROOT/synth_split_val_${TAG}" --split val --clips "$SPLIT_VAL_CLIPS" --frames 8 "${common[@]}"
neural-render synth --out "$ROOT/synth_split_test_${TAG}" --split test --clips "$SPLIT_TEST_CLIPS" --frames 8 "${common[@]}"
neural-render synth --out "$ROOT/synth_val_${TAG}" --envmaps train --seed 4000 --clips "$VAL_CLIPS" --frames 8 "${common[@]}"
neural-render synth --out "$ROOT/synth_train_${TAG}" --envmaps train --seed 1000 --clips "$TRAIN_CLIPS" --frames 8 "${common[@]}"
if [ "$RVAR_CLIPS" -gt 0 ]; then
  neural-render synth --out "$ROOT/synth_train_${TAG}_rvar1" --envmaps train --seed 1000 --roughness-variant 1 \
    --clips "$RVAR_CLIPS" --frames 8 "${common[@]}"
fi
if [ "$SKY_CLIPS" -gt 0 ]; then
  neural-render synth --out "$ROOT/synth_train_${TAG}_sky" --sky --seed 5000 --clips "$SKY_CLIPS" --frames 8 "${common[@]}"
fi
# Generator-2 datasets (issue #23, neural_render/synth/splits.py train2 / val2 / val2_table / test2 / test2_table:
# scene styles incl. tabletop product shots with black backgrounds, textured materials, more shape families, local
# lights; held-out rule fixed in splits.py before any of them was generated). Only with V2_SETS=1 (default 0):
#   ROOT/synth_train2_TAG        --split train2 (train + train_extra maps, train families / photos), TRAIN2_CLIPS (512)
#   ROOT/synth_val2_TAG          --split val2, VAL2_CLIPS (48): every choice about models trained on train2
#   ROOT/synth_val2_table_TAG    --split val2_table, VAL2_CLIPS (48): choices about tabletop / black-background scenes
#   ROOT/synth_test2_TAG         --split test2, TEST2_CLIPS (48): scored ONCE per model; never used for a choice
#   ROOT/synth_test2_table_TAG   --split test2_table, TEST2_CLIPS (48): scored ONCE per model; never used for a choice
# Speed (scalar_rgb, 1 worker, 2-core CPU under load): 1.4 frames/s at 128x128 / 16 spp (1.6 for --split train).
if [ "${V2_SETS:-0}" = 1 ]; then
  for v2 in val2 val2_table test2 test2_table; do
    case "$v2" in val2*) n="${VAL2_CLIPS:-48}" ;; *) n="${TEST2_CLIPS:-48}" ;; esac
    neural-render synth --out "$ROOT/synth_${v2}_${TAG}" --split "$v2" --clips "$n" --frames 8 "${common[@]}"
  done
  neural-render synth --out "$ROOT/synth_train2_${TAG}" --split train2 --clips "${TRAIN2_CLIPS:-512}" --frames 8 \
    "${common[@]}"
fi
