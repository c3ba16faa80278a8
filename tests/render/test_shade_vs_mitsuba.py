"""Our split-sum shader (and Monte-Carlo reference) against Mitsuba 3 on the same sphere, camera and sky.

Mitsuba scene: ``sphere`` (radius 1 at the origin), ``envmap`` emitter built with
:func:`neural_render.render.envmap.mitsuba_compatible_image` (so it evaluates exactly our bilinear lookup; its
``to_world`` is the env rotation), ``perspective`` sensor with ``to_world = to_mitsuba_to_world(c2w)``, the same
horizontal FOV (``fov_axis`` x) and a box pixel filter, ``direct`` integrator, 64 x 64 px, 1024 spp, in
``llvm_ad_rgb`` (``scalar_rgb`` fallback). Ours shades the exact analytic G-buffer at pixel centres.
PSNR is on linear radiance over the sphere mask eroded by 2 px (drops Mitsuba's anti-aliased silhouette), with
the Mitsuba image's maximum as peak. The sky is the shipped ``kiara_1_dawn`` (a low sun: orientation errors
show up immediately). Measured numbers are in each case's comment.
"""

import numpy as np
import pytest
import torch

from neural_render.io import load_envmap
from neural_render.render.analytic import sphere_gbuffer
from neural_render.render.envmap import mitsuba_compatible_image
from neural_render.render.shade import prepare_ibl, shade, shade_monte_carlo
from neural_render.types import Camera, look_at, to_mitsuba_to_world

SIZE = 64
FOV_X = 40.0
SPP = 1024
C2W = look_at((0.3, 0.5, 3.0), (0.0, 0.0, 0.0))
ALBEDO = [0.7, 0.5, 0.3]


@pytest.fixture(scope="module")
def env():
    return load_envmap("data/envmaps/kiara_1_dawn.hdr")


@pytest.fixture(scope="module")
def camera():
    return Camera.from_fov(FOV_X, SIZE, SIZE, C2W[None, None])


def _mitsuba_render(mi, env, bsdf: dict, spp: int = SPP, seed: int = 3) -> torch.Tensor:
    """(1, 1, 3, H, W) float32 linear radiance of the unit sphere with ``bsdf`` under ``env`` (rotation applied)."""
    bitmap = np.ascontiguousarray(mitsuba_compatible_image(env.image).permute(1, 2, 0).numpy().astype(np.float32))
    env_to_world = torch.eye(4)
    env_to_world[:3, :3] = env.rotation
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "direct"},
        "sensor": {"type": "perspective", "fov": FOV_X, "fov_axis": "x",
                   "to_world": mi.ScalarTransform4f(to_mitsuba_to_world(C2W).tolist()),
                   "film": {"type": "hdrfilm", "width": SIZE, "height": SIZE, "rfilter": {"type": "box"},
                            "pixel_format": "rgb"},
                   "sampler": {"type": "independent", "sample_count": spp, "seed": seed}},
        "emitter": {"type": "envmap", "bitmap": mi.Bitmap(bitmap),
                    "to_world": mi.ScalarTransform4f(env_to_world.tolist())},
        "sphere": {"type": "sphere", "center": [0.0, 0.0, 0.0], "radius": 1.0, "bsdf": bsdf},
    })
    image = np.array(mi.render(scene), dtype=np.float32)
    return torch.from_numpy(image).permute(2, 0, 1)[None, None].contiguous()


def _eroded(mask: torch.Tensor, steps: int = 2) -> torch.Tensor:
    m = mask[0]
    for _ in range(steps):
        m = -torch.nn.functional.max_pool2d(-m, 3, 1, 1)
    return m[None] > 0


def _compare(ours: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(PSNR dB, relative error of the mean) over ``mask``."""
    m = mask.expand_as(ref)
    mse = ((ours[m] - ref[m]) ** 2).mean()
    return float(10 * torch.log10(ref[m].max() ** 2 / mse)), float(ours[m].mean() / ref[m].mean() - 1.0)


CASES = {
    # name: (our material, Mitsuba BSDF, min PSNR, max |mean error|)
    # Lambert: measured 37.1 dB, mean +1.4 % (our dielectric carries a 4 % Schlick specular layer; Mitsuba's
    # `diffuse` has none, so ours is slightly brighter, mostly towards grazing angles). Two Mitsuba seeds agree to
    # 36.4 dB, so this case is noise-limited.
    "lambert": ({"basecolor": tuple(ALBEDO), "roughness": 1.0, "metallic": 0.0},
                {"type": "diffuse", "reflectance": {"type": "rgb", "value": ALBEDO}}, 34.0, 0.03),
    # White rough metal: `roughconductor` GGX alpha = 0.5^2 with F = 1 (material none) equals our metal with
    # basecolor 1 up to Smith G (Mitsuba: separable, ours: height-correlated): measured 37.1 dB, mean -0.4 %.
    "rough_conductor": ({"basecolor": (1.0, 1.0, 1.0), "roughness": 0.5, "metallic": 1.0},
                        {"type": "roughconductor", "material": "none", "distribution": "ggx", "alpha": 0.25},
                        34.0, 0.02),
    # Coloured glossy metal via `principled` (metallic 1, roughness 0.3, alpha = roughness^2, Schlick F0 =
    # base colour): measured 44.4 dB, mean +1.0 %.
    "principled_metal": ({"basecolor": (0.9, 0.6, 0.3), "roughness": 0.3, "metallic": 1.0},
                         {"type": "principled", "base_color": {"type": "rgb", "value": [0.9, 0.6, 0.3]},
                          "metallic": 1.0, "roughness": 0.3}, 40.0, 0.03),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_sum_matches_mitsuba(mi, env, camera, case):
    material, bsdf, min_psnr, max_mean = CASES[case]
    g = sphere_gbuffer(camera, (0.0, 0.0, 0.0), 1.0, **material)
    ours = shade(g, camera, prepare_ibl(env), background=False)
    ref = _mitsuba_render(mi, env, bsdf)
    psnr, mean_err = _compare(ours, ref, _eroded(g.mask))
    assert psnr >= min_psnr, f"{case}: {psnr:.1f} dB"
    assert abs(mean_err) < max_mean, f"{case}: mean {mean_err:+.3f}"


def test_rotated_env_matches_mitsuba_and_a_wrong_rotation_does_not(mi, env, camera):
    """Env turned by yaw 70, pitch 20 (our lazy rotation == Mitsuba envmap to_world), Mitsuba at 512 spp: Lambert
    measured 33.3 dB / mean +1.7 %, white rough metal 32.3 dB / +0.3 %. Negative control: our render with the
    UNrotated sky against Mitsuba's rotated one loses badly (measured 13.8 dB), so the comparison does detect
    orientation errors."""
    rotated = env.rotated(yaw=70.0, pitch=20.0)
    ibl = prepare_ibl(rotated)
    for name, min_psnr in (("lambert", 31.0), ("rough_conductor", 29.5)):
        material, bsdf, _, max_mean = CASES[name]
        g = sphere_gbuffer(camera, (0.0, 0.0, 0.0), 1.0, **material)
        ref = _mitsuba_render(mi, rotated, bsdf, spp=512)
        psnr, mean_err = _compare(shade(g, camera, ibl, background=False), ref, _eroded(g.mask))
        assert psnr >= min_psnr and abs(mean_err) < max_mean, f"{name}: {psnr:.1f} dB, mean {mean_err:+.3f}"
        if name == "rough_conductor":
            wrong, _ = _compare(shade(g, camera, prepare_ibl(env), background=False), ref, _eroded(g.mask))
            assert wrong < psnr - 8.0, f"unrotated sky still scores {wrong:.1f} dB"


def test_monte_carlo_reference_matches_mitsuba(mi, env, camera):
    """Our MC shader (512 spp) vs Mitsuba (1024 spp) on the white rough metal: both unbiased for nearly the same
    BRDF (Smith G differs), so the agreement is noise-limited: measured 37.7 dB, mean +0.02 %."""
    material, bsdf, _, _ = CASES["rough_conductor"]
    g = sphere_gbuffer(camera, (0.0, 0.0, 0.0), 1.0, **material)
    ours = shade_monte_carlo(g, camera, env, 512, torch.Generator().manual_seed(0), background=False)
    psnr, mean_err = _compare(ours, _mitsuba_render(mi, env, bsdf), _eroded(g.mask))
    assert psnr >= 34.0 and abs(mean_err) < 0.01, f"{psnr:.1f} dB, mean {mean_err:+.3f}"
