"""Translator: identity, batching, border, mouth and lid compositing, on the sample face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

import rt_smile.models.translator as translator_module
from rt_smile.config import CropConfig, DetectorConfig, TranslatorConfig
from rt_smile.data.expressions import apply_expression
from rt_smile.face import topology as topo
from rt_smile.face.align import FaceCrop, crop_face
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.io.images import load_image
from rt_smile.models.translator import (
    UPPER_INCISOR_IOD,
    FacePrior,
    Translator,
    _basis_product,
    _cheek_luma,
    _eye_polygon,
    prepare_face,
    tps_flow_basis,
)
from rt_smile.train.fidelity import REFERENCE_EXPRESSIONS


def _psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def sample_crop(detector: LandmarkDetector, sample_file) -> FaceCrop:
    img = load_image(sample_file)
    return crop_face(img, detect_face(img, DetectorConfig(), detector), CropConfig(size=256))


@pytest.fixture(scope="module")
def prior(sample_crop: FaceCrop) -> FacePrior:
    return prepare_face(sample_crop.image, sample_crop.landmarks)


def _render(tr: Translator, prior: FacePrior, targets: NDArray[np.float64]) -> NDArray[np.uint8]:
    with torch.inference_mode():
        out = tr.render(prior, torch.from_numpy(targets).float())
    return (out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)


def test_zero_displacement_returns_the_crop(sample_crop: FaceCrop, prior: FacePrior) -> None:
    frame = _render(Translator(256), prior, sample_crop.landmarks[None, :468])[0]
    assert _psnr(frame, sample_crop.image) >= 45.0


def test_batch_matches_single_frames(sample_crop: FaceCrop, prior: FacePrior) -> None:
    tr = Translator(256)
    exprs = [{"AU12": 0.9}, {"AU45": 1.0}, {"AU25": 0.7, "AU26": 0.4}]
    targets = np.stack([apply_expression(sample_crop.landmarks, e)[:468] for e in exprs])
    batch = _render(tr, prior, targets)
    for i in range(len(exprs)):
        single = _render(tr, prior, targets[i : i + 1])[0]
        assert np.abs(batch[i].astype(int) - single.astype(int)).max() <= 1


def test_one_batch_renders_several_photos(
    sample_crop: FaceCrop, prior: FacePrior, detector: LandmarkDetector
) -> None:
    """Two photos with two frames each in one call (as the engine batches sessions): each frame
    matches the render of its own photo alone."""
    tr = Translator(256)
    mirrored = sample_crop.image[:, ::-1].copy()
    lm_m = detect_face(mirrored, DetectorConfig(), detector).points[:468]
    other = prepare_face(mirrored, lm_m)
    open_smile = {"AU12": 0.7, "AU25": 0.7, "AU26": 0.4}
    targets = [
        apply_expression(lm, e)[:468]
        for lm in (sample_crop.landmarks, lm_m)
        for e in ({"AU12": 0.9, "AU45": 1.0}, open_smile)  # a blink: each photo's own lid skin
    ]
    priors = (prior, other)
    with torch.inference_mode():
        batch = tr(
            torch.cat([q.image for q in priors]),
            torch.stack([q.flow_basis for q in priors]),
            torch.stack([q.neutral for q in priors]),
            torch.from_numpy(np.stack(targets)).float(),
            torch.stack([q.palette for q in priors]),
        )
    frames = (batch.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    assert frames.shape[0] == 4
    for i, t in enumerate(targets):
        single = _render(tr, priors[i // 2], t[None])[0]
        assert np.abs(frames[i].astype(int) - single.astype(int)).max() <= 1
    assert np.abs(frames[0].astype(int) - frames[2].astype(int)).mean() > 5, "two different photos"


def test_frames_must_split_evenly_over_the_photos(prior: FacePrior) -> None:
    two = [torch.stack([t, t]) for t in (prior.flow_basis, prior.neutral, prior.palette)]
    with pytest.raises(ValueError, match="3 target frames do not split evenly over 2 photos"):
        image, three = prior.image.expand(2, -1, -1, -1), prior.neutral.expand(3, -1, -1)
        Translator(256)(image, two[0], two[1], three, two[2])


def test_border_stays_fixed_and_face_changes(sample_crop: FaceCrop, prior: FacePrior) -> None:
    target = apply_expression(sample_crop.landmarks, {"AU12": 1.0, "AU25": 1.0, "AU26": 1.0})
    frame = _render(Translator(256), prior, target[None, :468])[0]
    border = np.ones((256, 256), bool)
    border[8:-8, 8:-8] = False
    assert _psnr(frame[border], sample_crop.image[border]) >= 45.0
    mouth = (slice(140, 200), slice(80, 176))
    assert np.abs(frame[mouth].astype(int) - sample_crop.image[mouth].astype(int)).mean() > 10


def test_open_mouth_gets_dark_cavity_and_bright_teeth(sample_crop: FaceCrop, prior: FacePrior) -> None:
    target = apply_expression(sample_crop.landmarks, {"AU25": 1.0, "AU26": 0.8})
    frame = _render(Translator(256), prior, target[None, :468])[0].astype(np.float64)
    up, lo = target[13], target[14]
    column = frame[int(up[1]) + 1 : int(lo[1]) - 1, round(float(up[0]))].mean(1)
    assert column.min() < 80, "no dark cavity between the parted lips"
    assert column.max() > 150, "no teeth band under the upper lip"


def test_blink_covers_the_eyes_with_lid_skin(sample_crop: FaceCrop, prior: FacePrior) -> None:
    neutral = _render(Translator(256), prior, sample_crop.landmarks[None, :468])[0]
    target = apply_expression(sample_crop.landmarks, {"AU45": 1.0})
    frame = _render(Translator(256), prior, target[None, :468])[0]
    for upper in (159, 386):
        x = round(float(sample_crop.landmarks[upper, 0]))
        y0, y1 = int(sample_crop.landmarks[upper, 1]) + 1, int(target[upper, 1]) - 2
        before = neutral[y0:y1, x - 2 : x + 3].astype(float).std()
        after = frame[y0:y1, x - 2 : x + 3].astype(float).std()
        assert after < before, "the lid region should be smooth skin, not iris and sclera"


def test_head_motion_draws_no_lid(sample_crop: FaceCrop, prior: FacePrior) -> None:
    """The live engine's idle head motion moves, turns and scales all the landmarks together:
    then no lid is drawn over the eyes (the warp alone moves them), nor on a smile, whose
    cheek raise lifts the eye corners more than the upper lid, while a blink on the moved head
    still closes them. A lid's drop is measured against the photo's lid carried by the head's
    motion (fitted on the stable points); against the photo's lid where it was, a head 2 px
    lower drew a lid band and a lash line over both eyes, and against the lid carried by the
    eye's corners, a closed smile drew a lid."""
    tr = Translator(256)
    lm = sample_crop.landmarks[:468]
    a = np.deg2rad(1.2)
    turn = 1.02 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = lm.mean(0)

    def moved(points: NDArray[np.float64]) -> NDArray[np.float64]:
        return (points[:468] - centre) @ turn.T + centre + np.array([0.5, 2.0])

    blink = apply_expression(sample_crop.landmarks, {"AU45": 1.0})
    smiles = [
        apply_expression(sample_crop.landmarks, REFERENCE_EXPRESSIONS[name], sample_crop.depth)[:468]
        for name in ("closed smile", "open smile")
    ]
    targets = torch.from_numpy(np.stack([moved(lm), *smiles, moved(blink)])).float()
    n = targets.shape[0]
    neutral = prior.neutral[None].expand(n, -1, -1)
    pix = tr.roi_pixels[:, : 2 * tr.n_eye].expand(n, -1, -1)
    iod = torch.full((n, 1), float(sample_crop.iod))
    palette, src = prior.palette[None].expand(n, -1, -1), prior.image.expand(n, -1, -1, -1)
    with torch.inference_mode():
        _, alpha = tr.lid_layer(pix, neutral, targets, palette, src, iod)
    assert alpha[:3].amax(1).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=0.01)
    assert float(alpha[3].max()) > 0.9


def test_a_lid_partly_down_draws_no_eyeliner(sample_crop: FaceCrop, prior: FacePrior) -> None:
    """A lid partly down (a third of a blink, AU45 0.3; the lid tightener, AU7 1) keeps a soft
    lash line along its margin, lighter on average over the three middle points of each upper
    lid than the photo's own lashes there; the closed lid (AU45 1) draws the full line, darker
    than them. Before, a lid lowered by a pixel got the full line: black like eyeliner, 11-15
    levels darker than the photo's lashes."""
    lm = sample_crop.landmarks
    luma = np.array([0.299, 0.587, 0.114])
    points = (158, 159, 160, 385, 386, 387)

    def darkest(lum: NDArray[np.float64], at: NDArray[np.float64]) -> NDArray[np.float64]:
        """The darkest pixel within 2 rows of each upper-lid point, in its column."""
        return np.array(
            [lum[round(at[i, 1]) - 2 : round(at[i, 1]) + 3, round(at[i, 0])].min() for i in points]
        )

    own = darkest(sample_crop.image.astype(np.float64) @ luma, lm)
    for intensities, lighter in (({"AU45": 0.3}, True), ({"AU7": 1.0}, True), ({"AU45": 1.0}, False)):
        target = apply_expression(lm, intensities, sample_crop.depth)[:468]
        frame = _render(Translator(256), prior, target[None])[0].astype(np.float64) @ luma
        change = float((darkest(frame, target) - own).mean())
        assert (change > 5.0) if lighter else (change < 0.0), (intensities, change)


def _lid_texture_ratio(crop: FaceCrop, prior: FacePrior) -> list[float]:
    """Per eye: fine detail (mean |pixel - 3x3 mean|) of the closed lid over the photo's own
    under-eye skin, in the columns of the lid's middle point."""
    lm = crop.landmarks
    target = apply_expression(lm, {"AU45": 1.0})
    grey = _render(Translator(256), prior, target[None, :468])[0].astype(np.float64).mean(2)
    photo = crop.image.astype(np.float64).mean(2)

    def detail(img: NDArray[np.float64], y0: int, y1: int, x: int) -> float:
        patch = img[y0:y1, x - 4 : x + 5]
        return float(np.abs(patch - cv2.blur(patch, (3, 3))).mean())

    ratios = []
    for upper, lower in ((159, 145), (386, 374)):
        x = round(float(lm[upper, 0]))
        lid = detail(grey, int(lm[upper, 1]) + 1, int(target[upper, 1]) - 2, x)
        under = int(lm[lower, 1] + 0.08 * crop.iod), int(lm[lower, 1] + 0.2 * crop.iod)
        ratios.append(lid / detail(photo, *under, x))
    return ratios


def test_closed_lid_is_the_photos_own_skin(
    sample_crop: FaceCrop, prior: FacePrior, closed_lips: tuple[FaceCrop, FacePrior]
) -> None:
    """The closed lid carries the texture of the photo's skin (0.53-0.55 of the under-eye
    skin's fine detail on the sample, 0.27-0.30 on Grace Hopper), not a flat colour (the
    earlier flat lid: 0.19-0.26 and 0.07-0.11)."""
    assert min(_lid_texture_ratio(sample_crop, prior)) > 0.4
    assert min(_lid_texture_ratio(*closed_lips)) > 0.2


def test_a_lid_under_a_shading_brow_stays_in_its_shade(sample_crop: FaceCrop) -> None:
    """The sample with the skin above its eyes darkened to half (a deep-set eye under a brow):
    the closed lid, drawn from the lit skin under the eye, is toned down towards that shade
    (0.60-0.65 of the under-eye skin's brightness; with the tone left out, 0.86)."""
    lm, iod = sample_crop.landmarks, sample_crop.iod
    image = sample_crop.image.astype(np.float64)
    above = np.zeros(image.shape[:2], np.uint8)
    for lid_points in (topo.RIGHT_EYE_UPPER, topo.LEFT_EYE_UPPER):
        lid = lm[list(lid_points)]
        band = np.concatenate([lid - [0, 0.01 * iod], (lid - [0, 0.12 * iod])[::-1]])
        cv2.fillPoly(above, [np.round(band).astype(np.int32)], (1,))
    image[above.astype(bool)] *= 0.5
    shaded = image.astype(np.uint8)
    target = apply_expression(lm, {"AU45": 1.0})
    frame = _render(Translator(256), prepare_face(shaded, lm), target[None, :468])[0].mean(2)
    photo = shaded.astype(np.float64).mean(2)
    for upper, lower in ((159, 145), (386, 374)):
        x = round(float(lm[upper, 0]))
        lid_mean = frame[int(lm[upper, 1]) + 1 : int(target[upper, 1]) - 1, x - 3 : x + 4].mean()
        y0, y1 = int(lm[lower, 1] + 0.08 * iod), int(lm[lower, 1] + 0.2 * iod)
        under_mean = photo[y0:y1, x - 3 : x + 4].mean()
        assert lid_mean < 0.75 * under_mean, (upper, lid_mean, under_mean)


def test_flow_basis_reproduces_landmark_displacements(sample_crop: FaceCrop) -> None:
    lm = sample_crop.landmarks[:468]
    disp = apply_expression(lm, {"AU12": 0.9, "AU6": 0.5}) - lm
    basis = tps_flow_basis(lm, 256, TranslatorConfig())
    flow = basis @ disp  # (G*G, 2) on the coarse grid
    g = TranslatorConfig().grid
    corner = lm[61]
    cell = flow.reshape(g, g, 2)[int(corner[1] * g / 256), int(corner[0] * g / 256)]
    assert np.linalg.norm(cell - disp[61]) < 0.35 * np.linalg.norm(disp[61])


def test_translator_rejects_non_square_crop() -> None:
    with pytest.raises(ValueError, match="square"):
        prepare_face(np.zeros((100, 120, 3), np.uint8), np.zeros((468, 2)))


def test_open_mouth_keeps_the_photos_teeth_at_their_size(sample_crop: FaceCrop, prior: FacePrior) -> None:
    """The sample smiles with its upper teeth showing: opening the mouth carries those teeth with
    the upper lip, unstretched, instead of painting a flat band over them."""
    neutral = sample_crop.landmarks[:468]
    target = apply_expression(sample_crop.landmarks, {"AU25": 1.0, "AU26": 0.8})[:468]
    frame = _render(Translator(256), prior, target[None])[0].astype(np.float64)
    shown = float(neutral[14, 1] - neutral[13, 1])  # the photo's teeth, between its inner lips
    assert shown > 6.0, "the sample should show its teeth"
    dx, dy = np.round(target[13] - neutral[13]).astype(int)
    x, y = round(float(neutral[13, 0])), round(float(neutral[13, 1]))
    rows, cols = slice(y + 2, y + int(shown) - 2), slice(x - 10, x + 11)
    teeth = sample_crop.image[rows, cols].astype(np.float64)
    moved = frame[rows.start + dy : rows.stop + dy, cols.start + dx : cols.stop + dx]
    assert np.abs(moved - teeth).mean() < 8.0, "the photo's teeth should hang from the upper lip"
    assert moved.std() > 0.75 * teeth.std(), "their texture (gaps between teeth) should be kept"


def test_lip_between_the_inner_lip_points_is_not_taken_for_teeth(sample_crop: FaceCrop) -> None:
    """A smiling photo whose inner-lip points lie inside the lips (what shows between them is
    lip, not teeth or a dark gap; here the sample with that part painted lip-coloured): its
    open smile draws the upper teeth right under the upper lip, instead of carrying the lip
    pixels down as the photo's own teeth."""
    lm = sample_crop.landmarks
    poly = np.concatenate([lm[list(topo.LIPS_INNER_UPPER)], lm[list(topo.LIPS_INNER_LOWER)][::-1]])
    lips = np.zeros(sample_crop.image.shape[:2], np.uint8)
    outer = np.concatenate([lm[list(topo.LIPS_OUTER_UPPER)], lm[list(topo.LIPS_OUTER_LOWER)][::-1]])
    cv2.fillPoly(lips, [np.round(outer).astype(np.int32)], (1,))
    inner = np.zeros_like(lips)
    cv2.fillPoly(inner, [np.round(poly).astype(np.int32)], (1,))
    image = sample_crop.image.copy()
    lip_rgb = np.median(image[(lips > 0) & (inner == 0)], 0)
    image[cv2.dilate(inner, np.ones((3, 3), np.uint8)) > 0] = lip_rgb
    prior = prepare_face(image, lm)
    assert float(prior.palette[5, 0]) < 0.1, "the painted mouth should read as lip"
    target = apply_expression(lm, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4})[:468]
    frame = _render(Translator(256), prior, target[None])[0].astype(np.float64)
    luma = np.array([0.299, 0.587, 0.114])
    x, y = round(float(target[13, 0])), round(float(target[13, 1]))
    under_lip = frame[y + 2 : y + 6, x - 8 : x + 9] @ luma
    assert under_lip.mean() > float(lip_rgb @ luma) + 15, (under_lip.mean(), lip_rgb)  # lip carried: +0


@pytest.fixture(scope="module")
def closed_lips(detector: LandmarkDetector, other_face: NDArray[np.uint8]) -> tuple[FaceCrop, FacePrior]:
    """A neutral photo of another face whose lips are closed (no teeth to copy)."""
    crop = crop_face(other_face, detect_face(other_face, DetectorConfig(), detector), CropConfig(size=256))
    return crop, prepare_face(crop.image, crop.landmarks)


def test_closed_lips_photo_gets_white_teeth(closed_lips: tuple[FaceCrop, FacePrior]) -> None:
    """No teeth and no clear eye whites in the photo (spectacles): the teeth colour is of a
    neutral hue, enamel's (the old palette took the brightest eye pixels: pink skin, saturation
    0.42)."""
    teeth = closed_lips[1].palette[0].numpy()
    assert (teeth.max() - teeth.min()) / teeth.max() < 0.15, teeth


def test_drawn_teeth_are_lit_as_the_face_is(
    sample_crop: FaceCrop, closed_lips: tuple[FaceCrop, FacePrior]
) -> None:
    """Teeth drawn for a photo that shows none are lit as the face is, not a white that glows in
    a dim photo. Grace Hopper (spectacles: no clear eye whites, so the skin under the eyes is
    the reference): the photo darkened to 60 % gets teeth 60 % as bright, and they are brighter
    than that skin. The sample with its mouth painted lip red (clear eye whites, the
    reference; real teeth: 1.13 times as bright, median), its skin, all but the eye openings,
    as it is or darkened to 50 % or to 35 %: the same teeth; a darker skin does not make them
    grey (the skin as reference would take them to 50 % and 35 %)."""
    luma = np.array([0.299, 0.587, 0.114])

    def teeth(image: NDArray[np.float64], lm: NDArray[np.float64]) -> float:
        return float(
            prepare_face(np.clip(image + 0.5, 0, 255).astype(np.uint8), lm).palette[0].numpy() @ luma
        )

    crop, prior = closed_lips
    lm = crop.landmarks
    bright = float(prior.palette[0].numpy() @ luma)
    assert teeth(crop.image * 0.6, lm) / bright == pytest.approx(0.6, abs=0.03)
    under_eyes = [
        crop.image[
            round(lm[i, 1] + 0.1 * crop.iod) : round(lm[i, 1] + 0.2 * crop.iod),
            round(lm[i, 0] - 0.05 * crop.iod) : round(lm[i, 0] + 0.05 * crop.iod),
        ].reshape(-1, 3)
        for i in (145, 374)
    ]
    skin = float(np.median(np.concatenate(under_eyes) @ luma)) / 255.0
    assert bright > 1.05 * skin, (bright, skin)
    lm = sample_crop.landmarks
    eyes = _mask(
        sample_crop.image,
        [
            _eye_polygon(lm, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
            _eye_polygon(lm, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
        ],
    )
    painted = _painted_mouth(sample_crop).astype(np.float64)
    shaded = [painted.copy() for _ in range(2)]
    for image, gain in zip(shaded, (0.5, 0.35), strict=True):
        image[eyes == 0] *= gain
    plain = teeth(painted, lm)
    assert [teeth(image, lm) / plain for image in shaded] == pytest.approx([1.0, 1.0], abs=0.03)


def _painted_mouth(crop: FaceCrop) -> NDArray[np.uint8]:
    """``crop``'s image with the inside of its inner lips painted a lip red (saturation 0.48,
    well above the 0.3 of what is taken for teeth): a mouth that shows no teeth."""
    lm = crop.landmarks
    painted = crop.image.copy()
    inner = _mask(painted, [_eye_polygon(lm, topo.LIPS_INNER_UPPER, topo.LIPS_INNER_LOWER)])
    painted[cv2.dilate(inner, np.ones((3, 3), np.uint8)) > 0] = (200, 110, 105)
    return painted


def _tinted(
    image: NDArray[np.uint8], polygons: list[NDArray[np.float64]], gain: list[float]
) -> NDArray[np.uint8]:
    """``image`` with the pixels inside ``polygons`` scaled per channel by ``gain``."""
    out = image.astype(np.float64)
    out[_mask(image, polygons) > 0] *= np.array(gain)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def test_teeth_take_the_photos_teeth_colour_or_the_eye_whites_hue(sample_crop: FaceCrop) -> None:
    """The sample shows its teeth: bluer teeth in the photo (blue × 0.85 between the inner lips)
    give bluer drawn teeth. With no teeth to see (the mouth painted lip-coloured), the drawn
    teeth take the hue of the eye whites: yellower eye whites (blue × 0.85), yellower teeth."""
    lm = sample_crop.landmarks
    mouth = [_eye_polygon(lm, topo.LIPS_INNER_UPPER, topo.LIPS_INNER_LOWER)]
    eyes = [
        _eye_polygon(lm, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
        _eye_polygon(lm, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
    ]

    def teeth(image: NDArray[np.uint8]) -> NDArray[np.float32]:
        return prepare_face(image, lm).palette[0].numpy()

    plain, blue = teeth(sample_crop.image), teeth(_tinted(sample_crop.image, mouth, [1.0, 1.0, 0.85]))
    assert (blue[2] / blue[1]) / (plain[2] / plain[1]) < 0.92, (plain, blue)
    painted = _painted_mouth(sample_crop)
    plain, yellow = teeth(painted), teeth(_tinted(painted, eyes, [1.0, 1.0, 0.85]))
    assert (yellow[2] / yellow[1]) / (plain[2] / plain[1]) < 0.92, (plain, yellow)


def _mask(image: NDArray[np.uint8], polygons: list[NDArray[np.float64]]) -> NDArray[np.uint8]:
    mask = np.zeros(image.shape[:2], np.uint8)
    for poly in polygons:
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (1,))
    return mask


def test_the_upper_lip_shades_the_top_of_the_teeth(closed_lips: tuple[FaceCrop, FacePrior]) -> None:
    """Drawn upper teeth are darker right under the upper lip (its shade: 0.8) than halfway
    down (the mouth layer's colour before it is blended in, at the middle of a central
    incisor; without the shade the two match)."""
    crop, prior = closed_lips
    target = apply_expression(crop.landmarks, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4})[:468]
    tr = Translator(256)
    iod = float(np.linalg.norm(target[topo.RIGHT_EYE_OUTER] - target[topo.LEFT_EYE_OUTER]))
    pix = tr.roi_pixels[:, 2 * tr.n_eye :]
    with torch.inference_mode():
        rgb, _, _ = tr.mouth_layer(
            pix,
            torch.from_numpy(target[None]).float(),
            prior.neutral[None],
            prior.image,
            prior.palette[None],
            torch.tensor([[iod]]),
        )
    lum = rgb[0].numpy().T @ np.array([0.299, 0.587, 0.114])
    x = round(float(target[78, 0] + target[308, 0]) / 2 + 0.5 * UPPER_INCISOR_IOD * iod)
    y = float(target[13, 1])

    xy = pix[0].numpy()

    def at(below: float) -> float:
        hit = (np.abs(xy[:, 0] - x) < 0.1) & (np.abs(xy[:, 1] - round(y + below)) < 0.1)
        return float(lum[hit][0])

    assert at(0.5) < 0.9 * at(0.05 * iod), (at(0.5), at(0.05 * iod))


def test_open_mouth_of_closed_lips_draws_separate_teeth(closed_lips: tuple[FaceCrop, FacePrior]) -> None:
    """Opening lips that were closed in the photo: the whole opening is drawn (no smeared lip
    texture), with upper teeth brighter than the skin whose gaps darken the middle of the mouth,
    and a dark cavity below them."""
    crop, prior = closed_lips
    target = apply_expression(crop.landmarks, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4})[:468]
    frame = _render(Translator(256), prior, target[None])[0].astype(np.float64)
    lum = frame @ np.array([0.299, 0.587, 0.114])
    up, lo = target[13], target[14]
    x, y = round(float(up[0])), round(float(up[1]))
    rows = lum[y + 1 : round(float(lo[1])) - 1, x - 6 : x + 7]
    skin = 255.0 * _cheek_luma(crop.image.reshape(-1, 3) / 255.0, (256, 256), crop.landmarks)
    assert np.median(rows, 1).max() > 1.1 * skin and rows.min(1).min() < 70, (rows, skin)
    middle = round(float(target[78, 0] + target[308, 0]) / 2)  # between the inner mouth corners
    teeth_row = lum[y + 3, middle - 6 : middle + 7]
    assert teeth_row[5:8].min() < teeth_row[[0, 1, 11, 12]].mean() - 15, "no gap between the central incisors"


def test_drawn_upper_teeth_have_rounded_tips(
    detector: LandmarkDetector, other_face: NDArray[np.uint8]
) -> None:
    """The drawn upper teeth's biting edge rises at each gap between them (rounded corners,
    ``TOOTH_CORNER`` of a tooth's width, 2.7 px here): at 512², under the middle gap and under
    the next gap on each side, the teeth end at least 2.5 rows higher than, on average, under
    the middles of the two teeth beside it (a straight edge, as before, ends level: within 0.5
    rows; the lower part of the upper teeth drawn at the lower teeth's spacing, as before
    that was mended, leaves 1.9-2.4 rows)."""
    crop = crop_face(other_face, detect_face(other_face, DetectorConfig(), detector), CropConfig(size=512))
    target = apply_expression(crop.landmarks, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4})[:468]
    prior = prepare_face(crop.image, crop.landmarks)
    lum = _render(Translator(512), prior, target[None])[0].astype(np.float64) @ np.array(
        [0.299, 0.587, 0.114]
    )
    iod = float(np.linalg.norm(target[topo.RIGHT_EYE_OUTER] - target[topo.LEFT_EYE_OUTER]))
    middle = float(target[78, 0] + target[308, 0]) / 2
    y = round(float(target[13, 1]))

    def end(x: float) -> float:
        """Where the teeth in column x end, to a sub-pixel."""
        column = lum[y : y + round(0.2 * iod), round(x)]
        top = int(np.argmax(column > 120))  # the teeth start under the lip ...
        last = top + int(np.argmax(column[top:] < 120)) - 1  # ... and end at the cavity
        return float(last + (column[last] - 120) / (column[last] - column[last + 1]))

    tooth, half = UPPER_INCISOR_IOD * iod, float(np.linalg.norm(target[308] - target[78])) / 2

    def at(u: float) -> float:
        """Column u teeth from the middle (the teeth narrow towards the corners)."""
        x = abs(u) * tooth
        for _ in range(20):
            x = abs(u) * tooth / (1.0 + 0.8 * (x / half) ** 2)
        return middle + np.sign(u) * x

    for gap in (-1, 0, 1):
        beside = (end(at(gap - 0.5)) + end(at(gap + 0.5))) / 2
        assert end(at(gap)) <= beside - 2.5, (gap, end(at(gap)), beside)


def test_a_wide_opening_shows_the_tongue(
    closed_lips: tuple[FaceCrop, FacePrior], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mouth opened well beyond the teeth (AU25 1, AU26 0.8) shows the tongue in the lower
    part of the opening: lighter and redder there than the bare cavity (the same render with
    the tongue's gain at 1), the upper part unchanged; the closed loop's open smile (AU25 0.7,
    AU26 0.4) opens too little to show it."""
    crop, prior = closed_lips
    wide = apply_expression(crop.landmarks, {"AU12": 0.8, "AU25": 1.0, "AU26": 0.8})[:468]
    smile = apply_expression(crop.landmarks, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4})[:468]
    targets = np.stack([wide, smile])
    with_tongue = _render(Translator(256), prior, targets).astype(np.float64)
    monkeypatch.setattr(translator_module, "TONGUE_GAIN", 1.0)
    bare = _render(Translator(256), prior, targets).astype(np.float64)
    assert np.abs(with_tongue[1] - bare[1]).max() <= 1.0
    x = round(float(wide[78, 0] + wide[308, 0]) / 2)
    top, bottom = round(float(wide[13, 1])), round(float(wide[14, 1]))
    upper = np.s_[top : top + 2 * (bottom - top) // 5, x - 2 : x + 3]  # teeth and dark cavity
    lower = np.s_[(top + bottom) // 2 : bottom - 3, x - 2 : x + 3]
    assert (
        np.abs(with_tongue[0][upper] - bare[0][upper]).max() <= 2.0
    )  # (uint8 rounding of a float difference of 1.2)
    gain = with_tongue[0][lower] - bare[0][lower]
    assert gain.max(axis=(0, 1))[0] > 8.0 and (gain[..., 0] >= gain[..., 1]).all(), gain.max(axis=(0, 1))


def test_the_backward_map_has_converged(sample_crop: FaceCrop) -> None:
    """The default number of Newton steps that invert the warp on the coarse grid renders the
    sample's smiles and blink as three times as many steps do, but for the odd pixel where the
    warp folds: PSNR 76-86 dB with 4 steps (0 steps: 39-71 dB; 1 step: 66-75 dB)."""
    exprs = [{"AU12": 0.9, "AU6": 0.5}, {"AU12": 0.8, "AU6": 0.4, "AU25": 0.7, "AU26": 0.4}, {"AU45": 1.0}]
    targets = np.stack([apply_expression(sample_crop.landmarks, e, sample_crop.depth)[:468] for e in exprs])
    steps = TranslatorConfig().iterations
    frames = {}
    for n in (steps, 3 * steps):
        config = TranslatorConfig(iterations=n)
        prior = prepare_face(sample_crop.image, sample_crop.landmarks, config)
        frames[n] = _render(Translator(256, config), prior, targets)
    for a, b in zip(frames[steps], frames[3 * steps], strict=True):
        assert _psnr(a, b) >= 70.0
        assert (np.abs(a.astype(int) - b.astype(int)).max(-1) > 2).mean() < 2e-4


def test_one_frame_is_sampled_as_two_halves_with_the_same_values() -> None:
    """On the CPU one frame's whole-frame sampling runs as two row halves on the batch axis:
    the values are those of one ``grid_sample`` call, with a warped (not identity) grid."""
    tr = Translator(256)
    src = torch.rand(1, 3, 256, 256)
    back = 0.05 * torch.randn(1, 2, tr.config.grid, tr.config.grid)
    grid = tr._frame_grid(back)
    whole = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert float((whole - src).abs().max()) > 0.1
    assert torch.equal(tr._warp_frame(back, src), whole)


@pytest.mark.parametrize(
    ("photos", "rows", "cells"), [(1, 2, 4096), (1, 8, 1024), (2, 4, 4096), (1, 2, 81), ((3, 1), 2, 4096)]
)
def test_the_flow_basis_product_equals_one_matrix_product(
    photos: int | tuple[int, int], rows: int, cells: int
) -> None:
    """One photo's basis product runs as two column halves on the CPU (several photos, an odd
    number of cells, or rows of several photos against one basis: one product); the values are
    the product's."""
    torch.manual_seed(0)
    left_p, basis_p = photos if isinstance(photos, tuple) else (photos, photos)
    left, basis = torch.randn(left_p, rows, 468), torch.randn(basis_p, 468, cells)
    out = _basis_product(left, basis)
    assert out.shape == (left_p, rows, cells)
    assert torch.allclose(out, left @ basis, rtol=1e-5, atol=1e-4)


def test_the_torn_mask_is_a_3x3_dilation_then_mean() -> None:
    """``_torn``'s slice passes give the pooling ops' values: a 3×3 max, then a 3×3 mean over
    the pixels inside the mouth ROI (``count_include_pad=False``)."""
    tr = Translator(256)
    x0, y0, x1, y1 = tr.mouth_roi
    stretch = torch.ones(2, 1, (y1 - y0) * (x1 - x0))
    stretch[torch.rand_like(stretch) < 0.02] = 4.0  # a few torn pixels, at the edges too
    torn = ((stretch - 1.5) / 1.5).clamp(0.0, 1.0).view(-1, 1, y1 - y0, x1 - x0)
    pooled = F.max_pool2d(torn, 3, stride=1, padding=1)
    want = F.avg_pool2d(pooled, 3, stride=1, padding=1, count_include_pad=False).flatten(2)
    assert torch.allclose(tr._torn(stretch), want, atol=1e-6)
    assert float(want.max()) == 1.0 and (want > 0).sum() > 5 * (stretch > 3).sum()
