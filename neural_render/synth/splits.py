"""The dataset splits of the synthetic data engine, defined in ONE place: train, val and test (issue #22).

Each split has its own default dataset seed (clip ``i`` is a function of (seed, i), so disjoint seeds give
disjoint scenes) AND its own held-out factors, so that val and test measure generalisation to things no model
was trained on, not only to new random draws:

========  ====================  ==========================  ==========================  =========  ======
split     env maps (split.json)  shape families             material families          sky split  seed
========  ====================  ==========================  ==========================  =========  ======
train     train (8 Poly Haven)  the 6 train families        constant, pattern           train      1000
val       val (4 Poly Haven)    train + extruded            train + noise               val        4000
test      test (4 Blender)      train + revolved, composite train + marble, wood        test       7000
========  ====================  ==========================  ==========================  =========  ======

- train: exactly the generator every shipped model was trained with (defaults of SynthConfig; ``neural-render
  synth --split train`` differs from ``--envmaps train --seed 1000`` only by recording the split name).
- val: for EVERY choice (model selection, hyper-parameters, ablations, README comparisons). Its env maps are the
  four that were called "test" before issue #22 (they were used for model selection, so they cannot be test).
- test: scored ONCE per shipped model, never used for a choice. Its env maps (Blender's CC0 world HDRIs city,
  forest, night, sunrise, picked by a fixed rule before any scoring: scripts/import_envmaps.py) and its seed range
  (7000) were never used by anything before.
- Held-out families are prominent: with train and held-out families listed, each object comes from the held-out
  ones with probability 1/2 (synth/families.py ``HELD_OUT_SHARE``; the same rule for materials), so about half of
  a val / test scene's objects and object materials are of a family the train split never draws. The ground keeps
  the train ground materials (constant or checker) in every split.
- Sky (``--sky``): disjoint sun-elevation and halo ranges per split (synth/sky.py ``SKY_SPLITS``).
- The env maps ``train_extra`` of split.json (the other 4 Blender maps) belong to no split: a pool for future
  training sets, never for val or test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from neural_render.errors import NeuralRenderError
from neural_render.synth.families import TRAIN_SHAPES
from neural_render.synth.materials import TRAIN_MATERIALS


@dataclass(frozen=True)
class Split:
    """What makes a dataset split: see the module doc's table."""

    name: str
    envmaps: str                        # key of data/envmaps/split.json (data_assets.envmap_split)
    shape_families: tuple[str, ...]
    material_families: tuple[str, ...]
    sky_split: str                      # key of synth/sky.py SKY_SPLITS
    seed: int                           # default dataset seed
    purpose: str

    def held_out_shapes(self) -> tuple[str, ...]:
        return tuple(f for f in self.shape_families if f not in TRAIN_SHAPES)

    def held_out_materials(self) -> tuple[str, ...]:
        return tuple(f for f in self.material_families if f not in TRAIN_MATERIALS)

    def configure(self, config):
        """``config`` (a SynthConfig) with this split's families, sky ranges and name."""
        return dataclasses.replace(config, shape_families=self.shape_families,
                                   material_families=self.material_families, sky_split=self.sky_split,
                                   split=self.name)


SPLITS = {
    "train": Split("train", "train", TRAIN_SHAPES, TRAIN_MATERIALS, "train", 1000,
                   "training data of the shipped models"),
    "val": Split("val", "val", TRAIN_SHAPES + ("extruded",), TRAIN_MATERIALS + ("noise",), "val", 4000,
                 "every choice: model selection, hyper-parameters, ablations"),
    "test": Split("test", "test", TRAIN_SHAPES + ("revolved", "composite"), TRAIN_MATERIALS + ("marble", "wood"),
                  "test", 7000, "scored once per shipped model; never used for a choice"),
}


def get_split(name: str) -> Split:
    """The split called ``name``; NeuralRenderError naming the known ones otherwise."""
    if name not in SPLITS:
        raise NeuralRenderError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
    return SPLITS[name]
