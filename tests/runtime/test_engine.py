"""SmileEngine and FaceSession: batched stepping across sessions, endless idle face, smooth
episodes, live control, capacity."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from rt_smile.config import EngineConfig
from rt_smile.face.align import canonical_template
from rt_smile.face.landmarks import LandmarkDetector
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.io.images import load_image
from rt_smile.models.cmmnet import CMMNet, CMMNetConfig
from rt_smile.runtime.engine import PreparedFace, SessionError, SmileEngine, prepare_photo
from tests.conftest import turned


@pytest.fixture(scope="module")
def face(sample_file, detector) -> PreparedFace:
    return prepare_photo(load_image(sample_file), 256, detector)


@pytest.fixture(scope="module")
def model() -> CMMNet:
    return load_cmmnet()


def test_one_step_renders_every_mode_of_every_session(model: CMMNet, face: PreparedFace) -> None:
    engine = SmileEngine(model, EngineConfig(episode_every=0.0))
    a = engine.open_session(face, "posed", 3)
    b = engine.open_session(face, "spontaneous", 1)
    a.trigger()
    out = engine.step()
    assert set(out) == {a.id, b.id}
    assert out[a.id].shape == (3, 256, 256, 3) and out[b.id].shape == (1, 256, 256, 3)
    assert out[a.id].dtype == np.uint8
    assert a.episode is not None and b.episode is None


@pytest.mark.parametrize("other_modes", [2, 4])
def test_sessions_batched_together_match_sessions_alone(
    model: CMMNet, face: PreparedFace, other_modes: int
) -> None:
    """The generator and translator batches across sessions change nothing per session, whether
    the sessions have the same K (the translator reads each photo once) or not (once per frame)."""
    together = SmileEngine(model, EngineConfig(episode_every=0.0, seed=5))
    alone = SmileEngine(model, EngineConfig(episode_every=0.0, seed=5))
    s0 = together.open_session(face, "posed", 4)
    other = together.open_session(face, "spontaneous", other_modes)
    solo = alone.open_session(face, "posed", 4)
    for s in (s0, other, solo):
        s.trigger()
    for _ in range(20):
        frames, solo_frames = together.step()[s0.id], alone.step()[solo.id]
        assert s0.last_targets is not None and solo.last_targets is not None
        np.testing.assert_allclose(s0.last_targets, solo.last_targets, atol=1e-3)
        assert np.abs(frames.astype(int) - solo_frames.astype(int)).max() <= 2


def test_episode_starts_and_ends_at_the_idle_face_smoothly(model: CMMNet, face: PreparedFace) -> None:
    engine = SmileEngine(model, EngineConfig(episode_every=0.0, blink_every=1000.0))
    s = engine.open_session(face, "posed", 4)
    engine.step()
    s.trigger()
    targets, in_episode = [], []
    for _ in range(int(3.5 * 30) + 10):
        engine.step()
        assert s.last_targets is not None
        targets.append(s.last_targets.copy())
        in_episode.append(s.episode is not None)
    t = np.stack(targets)  # (T, K, 468, 2)
    iod = face.iod
    idle = SmileEngine(model, EngineConfig(episode_every=0.0, blink_every=1000.0))
    ref = idle.open_session(face, "posed", 4)
    ref.motion = s.motion
    ref.frame = 1
    idle_targets = []
    for _ in range(len(t)):
        idle.step()
        assert ref.last_targets is not None
        idle_targets.append(ref.last_targets.copy())
    smile = np.linalg.norm(t - np.stack(idle_targets), axis=-1).mean(-1) / iod  # (T, K)
    assert smile[0].max() < 0.01, "an episode starts one small step from the photo's neutral face"
    assert smile.max() > 0.01, "and smiles"
    assert not in_episode[-1] and smile[-1].max() < 1e-6, "and returns to the idle face"
    step = np.linalg.norm(np.diff(t, axis=0), axis=-1).max(-1) / iod
    assert step.max() < 0.05, "no jumps between frames"


def test_idle_face_blinks_and_moves_without_episodes(model: CMMNet, face: PreparedFace) -> None:
    engine = SmileEngine(model, EngineConfig(episode_every=0.0, blink_every=1.0))
    s = engine.open_session(face, "spontaneous", 1)
    gaps, centres = [], []
    for _ in range(90):
        engine.step()
        assert s.episode is None and s.last_targets is not None
        pts = s.last_targets[0]
        gaps.append(np.linalg.norm(pts[159] - pts[145]) / face.iod)
        centres.append(pts.mean(0))
    neutral_gap = np.linalg.norm(face.neutral[159] - face.neutral[145]) / face.iod
    assert min(gaps) < 0.3 * neutral_gap, "blinks"
    drift = np.ptp(np.stack(centres), axis=0).max()
    assert 0.2 < drift < 0.1 * face.iod, "slight head motion"


def test_automatic_episodes_follow_the_rhythm(model: CMMNet, face: PreparedFace) -> None:
    engine = SmileEngine(model, EngineConfig(episode_every=1.0))
    s = engine.open_session(face, "posed", 1)
    started = 0
    for _ in range(10 * 30):
        was = s.episode
        engine.step()
        started += int(was is None and s.episode is not None)
    assert 2 <= started <= 4  # 3.5 s episodes + ~1 s rests in 10 s


def test_live_control_and_its_errors(model: CMMNet, face: PreparedFace) -> None:
    engine = SmileEngine(model, EngineConfig(episode_every=0.0))
    s = engine.open_session(face, "posed", 3)
    s.set_mode(2)
    assert [s.mode_for_track(j) for j in range(3)] == [2, 0, 1]
    s.set_intensity(0.5)
    s.trigger("spontaneous")
    engine.step()
    assert s.smile_class == "spontaneous" and s.episode is not None and s.episode.smile_class == "spontaneous"
    for method, value in ((s.set_mode, 3), (s.set_mode, True), (s.set_intensity, 2.0)):
        with pytest.raises(SessionError):
            method(value)  # type: ignore[operator, arg-type]
    with pytest.raises(SessionError, match="unknown smile class"):
        s.trigger("grin")


def test_open_session_checks_requests_and_capacity(model: CMMNet, face: PreparedFace) -> None:
    engine = SmileEngine(model, EngineConfig(max_sessions=1))
    with pytest.raises(SessionError, match="class"):
        engine.open_session(face, "grin", 1)
    with pytest.raises(SessionError, match="modes"):
        engine.open_session(face, "posed", 0)
    s = engine.open_session(face, "posed", 1)
    with pytest.raises(SessionError, match="too many sessions"):
        engine.open_session(face, "posed", 1)
    engine.close_session(s.id)
    engine.open_session(face, "posed", 1)
    small = SmileEngine(CMMNet(), EngineConfig(size=512))
    with pytest.raises(SessionError, match="prepared at 256"):
        small.open_session(face, "posed", 1)
    assert torch.is_grad_enabled()


def test_a_smile_asked_for_mid_episode_fades_the_running_one_out_first(
    model: CMMNet, face: PreparedFace
) -> None:
    engine = SmileEngine(model, EngineConfig(episode_every=0.0, blink_every=1000.0, head_roll_deg=0.0))
    s = engine.open_session(face, "posed", 2)
    s.trigger()
    for _ in range(30):  # well into the first smile
        engine.step()
    first = s.episode
    assert first is not None and s.last_targets is not None
    targets = [s.last_targets.copy()]
    s.trigger("spontaneous")
    episodes = []
    for _ in range(40):
        engine.step()
        targets.append(s.last_targets.copy())
        episodes.append(s.episode)
    step = np.linalg.norm(np.diff(np.stack(targets), axis=0), axis=-1).max(-1) / face.iod
    assert step.max() < 0.05, "no jump when a smile is asked for during another"
    started = [i for i, e in enumerate(episodes) if e is not None and e is not first]
    assert started and started[0] <= 16, "the new smile starts once the running one has faded (0.5 s)"
    new = episodes[started[0]]
    assert new is not None and new.smile_class == "spontaneous"


def test_a_template_motion_model_smiles_on_the_photos_own_face(face: PreparedFace) -> None:
    """A model that makes its motion on the canonical face starts from it, and each session's
    displacement is that motion retargeted onto the session's photo (``FaceMotion``)."""
    torch.manual_seed(0)
    template_model = CMMNet(CMMNetConfig(motion_face="template")).eval()
    torch.nn.init.normal_(template_model.vae.to_coords.weight, std=0.01)  # an untrained VAE never moves
    engine = SmileEngine(template_model, EngineConfig(episode_every=0.0, blink_every=1000.0))
    s = engine.open_session(face, "spontaneous", 2)
    assert s.face_motion is not None and s.face_motion.retarget is not None
    np.testing.assert_array_equal(s.face_motion.start, canonical_template())
    s.trigger()
    for _ in range(10):  # into the episode, past its fade-in
        engine.step()
    assert s.episode is not None and s.envelope() > 0.5
    with torch.no_grad():
        z0 = template_model.neutral_code(torch.from_numpy(canonical_template()).float()[None])
        torch.testing.assert_close(s.episode.state.z0[:1], z0)
        label = torch.zeros(1, dtype=torch.long)
        disp, _ = template_model.step(label, s.episode.noise[:, s.episode.frame], s.episode.state)
    on_template = disp.flatten(0, 1)[:2].double().numpy()  # (K, 468, 2)
    want = s.envelope() * (s.face_motion.displacement(on_template) @ face.aligned_to_crop.T)
    unretargeted = s.envelope() * (on_template @ face.aligned_to_crop.T)
    got = engine._smile_offsets([s])[s.id]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(got - unretargeted).max() > 1e-3, "the retargeting changed the motion"


def test_a_model_with_mode_noise_gives_each_mode_its_own_draw(face: PreparedFace) -> None:
    """Each episode draws every mode's own noise once (held in the multi-mode state), so the
    engine steps such a model like any other, and its modes move differently."""
    from rt_smile.models.multimode import MultiModeConfig

    torch.manual_seed(0)
    config = CMMNetConfig(motion_face="template", multimode=MultiModeConfig(noise_dim=8))
    noisy = CMMNet(config).eval()
    torch.nn.init.normal_(noisy.vae.to_coords.weight, std=0.01)  # an untrained VAE never moves
    torch.nn.init.normal_(noisy.multimode.head.weight, std=0.5)  # nor would an untrained head
    engine = SmileEngine(noisy, EngineConfig(episode_every=0.0, blink_every=1000.0))
    s = engine.open_session(face, "posed", 4)
    s.trigger()
    for _ in range(10):
        engine.step()
    assert s.episode is not None
    consts = s.episode.state.multimode[2]  # (K, z + 8): neutral code, then the mode's noise
    assert consts.shape == (4, 32 + 8) and consts[:, 32:].std(0).min() > 0.1, "one draw per mode"
    got = engine._smile_offsets([s])[s.id]  # (K, 468, 2)
    assert np.abs(got[0] - got[1]).max() > 1e-4, "the modes differ"


def test_the_photo_is_prepared_in_the_frame_of_the_face_turned_to_the_camera(sample_file, detector) -> None:
    """The generator's condition and the smile-to-crop map come from ``face_frame`` with the
    detection's depth (the sample is turned by under a degree, so they differ from the 2-D
    alignment's only a little, but they do)."""
    from rt_smile.face.align import face_frame
    from rt_smile.face.landmarks import detect_face
    from rt_smile.runtime.engine import prepare_landmarks

    photo = load_image(sample_file)
    found = detect_face(photo, detector=detector)
    prepared = prepare_landmarks(photo, found, 256)
    frame = face_frame(found.points[:468], found.depth[:468])
    np.testing.assert_allclose(prepared.neutral_aligned, frame.aligned, atol=1e-12)
    np.testing.assert_allclose(prepared.aligned_to_crop, prepared.crop.to_crop.matrix[:, :2] @ frame.to_image)
    flat = face_frame(found.points[:468])
    assert np.abs(prepared.neutral_aligned - flat.aligned).max() > 1e-3


def test_a_turned_face_is_warned_of_when_prepared(
    sample_file: Path, detector: LandmarkDetector, caplog: pytest.LogCaptureFixture
) -> None:
    """Preparing a session's photo warns of a face turned beyond 15° (the sample's landmarks
    turned by 30° about the vertical axis, depth and all); the sample itself is not warned of."""
    from rt_smile.face.landmarks import detect_face
    from rt_smile.runtime.engine import prepare_landmarks

    caplog.set_level(logging.WARNING, logger="rt_smile.face.align")
    photo = load_image(sample_file)
    found = detect_face(photo, detector=detector)
    prepare_landmarks(photo, found, 256)
    assert not caplog.records
    prepare_landmarks(photo, turned(found, 30.0), 256)
    (record,) = caplog.records
    words = record.getMessage().split()
    assert words[:4] == ["the", "face", "is", "turned"] and 27 <= int(words[4].rstrip("°")) <= 33
