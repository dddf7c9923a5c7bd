"""Colour attributes (paper Eq. 1-3) on clips with known colours and on real footage."""

import colorsys
import math

import numpy as np
import pytest
from factory import make_video

from emovid_datasets import color_attributes
from emovid_datasets.color import ColourSums, rgb_to_hsv
from emovid_datasets.media import MediaError


def test_rgb_to_hsv_matches_colorsys():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(500, 3), dtype=np.uint8)
    pixels[:5] = [[0, 0, 0], [255, 255, 255], [128, 128, 128], [255, 0, 0], [0, 0, 255]]
    h, s, v = rgb_to_hsv(pixels)
    for (r, g, b), hh, ss, vv in zip(pixels / 255.0, h, s, v):
        eh, es, ev = colorsys.rgb_to_hsv(r, g, b)
        assert hh == pytest.approx(eh * 360, abs=1e-3)
        assert ss == pytest.approx(es, abs=1e-5)
        assert vv == pytest.approx(ev, abs=1e-5)


def _colorsys_attributes(pixels):
    """Raw attributes of (N, 3) uint8 pixels from `colorsys`, one pixel at a time, sums by `math.fsum`."""
    hsv = [colorsys.rgb_to_hsv(r / 255, g / 255, b / 255) for r, g, b in pixels.tolist()]
    sin = math.fsum(math.sin(2 * math.pi * h) for h, _, _ in hsv)
    cos = math.fsum(math.cos(2 * math.pi * h) for h, _, _ in hsv)
    return {"sin": sin, "cos": cos, "hue_raw": (math.degrees(math.atan2(sin, cos)) + 360) % 360,
            "colorfulness_raw": math.fsum(s for _, s, _ in hsv) / len(hsv),
            "brightness_raw": math.fsum(v for _, _, v in hsv) / len(hsv)}


def _measured(frames):
    sums = ColourSums()
    for frame in frames:
        sums.add(frame)
    return sums, sums.attributes("test")


def _assert_agrees(sums, attrs, expected, pixels):
    assert sums.pixels == pixels
    # Sums of ~N terms of size <= 1: an exact-math result is within ~1e-12 of them; float32 per pixel is not.
    assert sums.sin == pytest.approx(expected["sin"], abs=1e-12 * pixels)
    assert sums.cos == pytest.approx(expected["cos"], abs=1e-12 * pixels)
    for key in ("colorfulness_raw", "brightness_raw"):
        assert attrs[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15)
    # The mean angle is as precise as the sums allow: loose where they cancel (a hue wheel's worth of pixels).
    tolerance = 1e-9 + math.degrees(2e-12 * pixels / math.hypot(expected["sin"], expected["cos"]))
    assert abs((attrs["hue_raw"] - expected["hue_raw"] + 180) % 360 - 180) <= tolerance
    assert attrs["hue"] == round(attrs["hue_raw"]) % 360
    assert attrs["colorfulness"] == round(attrs["colorfulness_raw"], 1)
    assert attrs["brightness"] == round(attrs["brightness_raw"], 1)


EDGE_PIXELS = [
    (0, 0, 0), (255, 255, 255), (128, 128, 128), (1, 1, 1),  # greys: hue 0, saturation 0
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 50), (50, 200, 100), (100, 50, 200),  # each channel max
    (255, 255, 0), (0, 255, 255), (255, 0, 255), (10, 10, 5), (5, 10, 10), (10, 5, 10),  # two channels tie at max
    (255, 0, 1), (1, 0, 255), (0, 1, 255), (1, 255, 0), (255, 1, 0), (0, 255, 1),  # next to a sextant's edge
    (255, 254, 0), (1, 0, 0), (0, 0, 1), (3, 2, 1), (255, 128, 0),
]


@pytest.mark.parametrize("pixel", EDGE_PIXELS)
def test_one_pixel_matches_colorsys(pixel):
    sums, attrs = _measured([np.array([[pixel]], dtype=np.uint8)])
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in pixel))
    assert math.atan2(sums.sin, sums.cos) % (2 * math.pi) == pytest.approx(2 * math.pi * h, abs=1e-12)
    assert attrs["colorfulness_raw"] == pytest.approx(s, rel=1e-15, abs=0)
    assert attrs["brightness_raw"] == pytest.approx(v, rel=1e-15, abs=0)
    assert attrs["frames_sampled"] == 1


def test_random_frames_match_colorsys():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(3)]
    frames[0][0, :len(EDGE_PIXELS)] = EDGE_PIXELS
    frames.append(np.full((8, 8, 3), (30, 30, 30), dtype=np.uint8))  # frames of any size pool their pixels
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames])
    sums, attrs = _measured(frames)
    _assert_agrees(sums, attrs, _colorsys_attributes(pixels), len(pixels))
    assert attrs["frames_sampled"] == 4


def test_every_hue_case_matches_colorsys():
    # Hue depends on (r - g, g - b) only: one pixel for each of the ~196k pairs a uint8 pixel can have,
    # and one for each (max, min) pair, which saturation and value depend on.
    rg, gb = (a.ravel() for a in np.meshgrid(np.arange(-255, 256), np.arange(-255, 256)))
    b = np.maximum(0, np.maximum(-gb, -(rg + gb)))
    hue_pixels = np.stack([b + rg + gb, b + gb, b], axis=1)
    hue_pixels = hue_pixels[hue_pixels.max(axis=1) <= 255].astype(np.uint8)
    hi, lo = (a.ravel() for a in np.meshgrid(np.arange(256), np.arange(256)))
    sv_pixels = np.stack([lo, hi, lo], axis=1)[lo <= hi].astype(np.uint8)
    for pixels in (hue_pixels, sv_pixels):
        sums, attrs = _measured([pixels[:, None, :]])
        _assert_agrees(sums, attrs, _colorsys_attributes(pixels), len(pixels))


def test_colour_sums_rejects_what_it_cannot_measure():
    with pytest.raises(MediaError, match="clip.mp4"):
        ColourSums().attributes("clip.mp4")
    with pytest.raises(ValueError, match="uint8"):
        ColourSums().add(np.zeros((4, 4, 3), dtype=np.float32))


def test_solid_colour_clip(tmp_path):
    # (0, 200, 0): hue 120, saturation 1.0, value 0.784 -> 0.8. H.264 round trip moves values slightly.
    clip = make_video(tmp_path / "green.mp4", frames=30, color=(0, 200, 0), audio=False)
    attrs = color_attributes(clip)
    assert attrs["hue"] == pytest.approx(120, abs=2)
    assert attrs["colorfulness"] == 1.0
    assert attrs["brightness"] == 0.8
    assert attrs["brightness_raw"] == pytest.approx(200 / 255, abs=0.02)
    assert attrs["frames_sampled"] == 2  # frames 0 and 20 of 30


def test_only_every_20th_frame_counts(tmp_path):
    # Frames 0, 20, 40 are blue; everything else red: the paper samples only the former.
    def colour(i):
        return np.full((48, 64, 3), (0, 0, 220) if i % 20 == 0 else (220, 0, 0), dtype=np.uint8)

    clip = make_video(tmp_path / "mixed.mp4", frames=41, color=colour, audio=False)
    attrs = color_attributes(clip)
    assert attrs["frames_sampled"] == 3
    assert attrs["hue"] == pytest.approx(240, abs=3)
    # All 41 frames: 38 red (0 deg) and 3 blue (240 deg) -> atan2(3 sin 240, 38 + 3 cos 240) = -4.07 deg.
    everything = color_attributes(clip, frame_step=1)
    assert everything["hue"] == pytest.approx(356, abs=2)


def test_hue_is_a_circular_mean(tmp_path):
    # Half the pixels at hue ~350, half at ~10: the circular mean is ~0, the arithmetic mean would be 180.
    def colour(_):
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        frame[:, :32] = np.array(colorsys.hsv_to_rgb(350 / 360, 1, 0.9)) * 255
        frame[:, 32:] = np.array(colorsys.hsv_to_rgb(10 / 360, 1, 0.9)) * 255
        return frame

    attrs = color_attributes(make_video(tmp_path / "wrap.mp4", frames=5, color=colour, audio=False))
    assert min(attrs["hue"], 360 - attrs["hue"]) <= 3
    assert 0 <= attrs["hue"] < 360


def _independent(path, step=20):
    """The paper's formula with OpenCV decoding and OpenCV's float HSV (H in degrees)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    sin_sum = cos_sum = s_sum = v_sum = n = 0.0
    index = 0
    while True:
        ok = cap.grab()
        if not ok:
            break
        if index % step == 0:
            _, bgr = cap.retrieve()
            hsv = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
            h = np.deg2rad(hsv[..., 0].astype(np.float64))
            sin_sum += np.sin(h).sum()
            cos_sum += np.cos(h).sum()
            s_sum += hsv[..., 1].sum()
            v_sum += hsv[..., 2].sum()
            n += h.size
        index += 1
    hue = (np.degrees(np.arctan2(sin_sum, cos_sum)) + 360) % 360
    return hue, s_sum / n, v_sum / n


@pytest.mark.parametrize("name", ["big_buck_bunny_480p_30s.mp4", "cockatoo.mp4"])
def test_agrees_with_independent_implementation_on_real_footage(shared_media, name):
    path = shared_media / name
    attrs = color_attributes(path)
    hue, sat, val = _independent(path)
    assert attrs["hue_raw"] == pytest.approx(hue, abs=1.0)
    assert attrs["colorfulness_raw"] == pytest.approx(sat, abs=0.01)
    assert attrs["brightness_raw"] == pytest.approx(val, abs=0.01)
    assert attrs["colorfulness"] == round(attrs["colorfulness_raw"], 1)
    assert attrs["hue"] == round(attrs["hue_raw"]) % 360
