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
- The env maps ``train_extra`` of split.json (the other 4 Blender maps) belong to no version-1 split: a pool for
  training sets (train2 uses it), never for val or test.

Generator version 2 splits (issue #23; synth/scene2.py: scene styles, black backgrounds, textured materials, more
shape families, local lights). Their held-out rule was fixed before any dataset of them was generated or any model
scored on them; it extends the version-1 rule and keeps its reservations (extruded / noise only in val splits,
revolved / composite / marble / wood only in test splits):

===========  ==========================  ===============================  ==============================  ======
split        env maps / sky / photos     shape families                   material families               seed
===========  ==========================  ===============================  ==============================  ======
train2       train + train_extra (12),   V2_TRAIN_FAMILIES: the 6 v1      V2_TRAIN_MATERIALS: constant,   11000
             train sky, train photos     train ones + rounded_box,        pattern, bricks, tiles, cells,
                                         capsule, rock, plate, rod        photo
val2         val (4), val sky,           train2 + extruded, ring          train2 + noise, dots            41000
             val photos
val2_table   as val2                     as val2                          as val2                         42000
test2        test (4), test sky,         train2 + revolved, composite,    train2 + marble, wood           71000
             test photos                 mug
test2_table  as test2                    as test2                         as test2                        72000
===========  ==========================  ===============================  ==============================  ======

Styles and backgrounds: train2, val2 and test2 draw all four styles (ground, table, room, backdrop) and both
backgrounds (env, black) uniformly; val2_table and test2_table are ALL tabletop scenes with hidden emitters (a black
background: "real product shots"), val2_table for choices about that style, test2_table scored once. Photos are
held out by file (data/textures/{train,val,test}, scripts/import_textures.py). Held-out families mix with the
train ones by the version-1 rule (each object / surface from a held-out family with probability 1/2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from neural_render.errors import NeuralRenderError
from neural_render.synth.families import TRAIN_SHAPES
from neural_render.synth.families2 import V2_TRAIN_FAMILIES
from neural_render.synth.materials import TRAIN_MATERIALS
from neural_render.synth.stage import BACKGROUNDS, STYLES
from neural_render.synth.textures import V2_TRAIN_MATERIALS


@dataclass(frozen=True)
class Split:
    """What makes a dataset split: see the module doc's table."""

    name: str
    envmaps: str                        # data_assets.envmap_names key: split.json key or a union (train_all)
    shape_families: tuple[str, ...]
    material_families: tuple[str, ...]
    sky_split: str                      # key of synth/sky.py SKY_SPLITS
    seed: int                           # default dataset seed
    purpose: str
    generator: int = 1                  # 2: synth/scene2.py; the fields below only matter there
    styles: tuple[str, ...] = STYLES
    backgrounds: tuple[str, ...] = BACKGROUNDS
    texture_split: str = "train"        # data/textures/<texture_split>/ photos

    def held_out_shapes(self) -> tuple[str, ...]:
        train = V2_TRAIN_FAMILIES if self.generator == 2 else TRAIN_SHAPES
        return tuple(f for f in self.shape_families if f not in train)

    def held_out_materials(self) -> tuple[str, ...]:
        train = V2_TRAIN_MATERIALS if self.generator == 2 else TRAIN_MATERIALS
        return tuple(f for f in self.material_families if f not in train)

    def configure(self, config):
        """``config`` (a SynthConfig) with this split's families, sky ranges, generator fields and name."""
        return dataclasses.replace(config, shape_families=self.shape_families,
                                   material_families=self.material_families, sky_split=self.sky_split,
                                   split=self.name, generator=self.generator, styles=self.styles,
                                   backgrounds=self.backgrounds, texture_split=self.texture_split)


SPLITS = {
    "train": Split("train", "train", TRAIN_SHAPES, TRAIN_MATERIALS, "train", 1000,
                   "training data of the shipped models"),
    "val": Split("val", "val", TRAIN_SHAPES + ("extruded",), TRAIN_MATERIALS + ("noise",), "val", 4000,
                 "every choice: model selection, hyper-parameters, ablations"),
    "test": Split("test", "test", TRAIN_SHAPES + ("revolved", "composite"), TRAIN_MATERIALS + ("marble", "wood"),
                  "test", 7000, "scored once per shipped model; never used for a choice"),
    "train2": Split("train2", "train_all", V2_TRAIN_FAMILIES, V2_TRAIN_MATERIALS, "train", 11000,
                    "training data with real variety (generator 2)", 2),
    "val2": Split("val2", "val", V2_TRAIN_FAMILIES + ("extruded", "ring"), V2_TRAIN_MATERIALS + ("noise", "dots"),
                  "val", 41000, "every choice about models trained on train2", 2, texture_split="val"),
    "val2_table": Split("val2_table", "val", V2_TRAIN_FAMILIES + ("extruded", "ring"),
                        V2_TRAIN_MATERIALS + ("noise", "dots"), "val", 42000,
                        "choices about tabletop product shots (black background)", 2, ("table",), ("black",), "val"),
    "test2": Split("test2", "test", V2_TRAIN_FAMILIES + ("revolved", "composite", "mug"),
                   V2_TRAIN_MATERIALS + ("marble", "wood"), "test", 71000,
                   "scored once per model trained on train2; never used for a choice", 2, texture_split="test"),
    "test2_table": Split("test2_table", "test", V2_TRAIN_FAMILIES + ("revolved", "composite", "mug"),
                         V2_TRAIN_MATERIALS + ("marble", "wood"), "test", 72000,
                         "tabletop product shots with hidden emitters; scored once, never used for a choice", 2,
                         ("table",), ("black",), "test"),
    "showcase_table": Split("showcase_table", "test", ("revolved", "composite", "mug"), ("marble", "wood"), "test",
                            90000, "the docs/ contact sheet (scripts/make_docs_sheets.py): tabletop, black background, "
                            "ONLY held-out shape and material families, test env maps and photos; never scored, never "
                            "used for a choice", 2, ("table",), ("black",), "test"),
}


def get_split(name: str) -> Split:
    """The split called ``name``; NeuralRenderError naming the known ones otherwise."""
    if name not in SPLITS:
        raise NeuralRenderError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
    return SPLITS[name]
