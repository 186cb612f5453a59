"""Where a model's motion is made and how it reaches a photo's face: on the face itself, or on
the canonical template and retargeted onto the face."""

from __future__ import annotations

import numpy as np
import torch

from rt_smile.data.retarget import Retarget
from rt_smile.data.synthetic import _identity_shape
from rt_smile.face.align import canonical_template
from rt_smile.models.cmmnet import CMMNet, CMMNetConfig
from rt_smile.runtime.generate import generate_landmarks
from rt_smile.runtime.motion import FaceMotion, generate_on_faces
from rt_smile.runtime.step import bench_inputs, targets_from


def _face(seed: int = 4) -> np.ndarray:  # type: ignore[type-arg]
    return _identity_shape(np.random.default_rng(seed))


def test_a_model_that_moves_the_face_itself_adds_its_displacement() -> None:
    model = CMMNet().eval()
    face = _face()
    motion = FaceMotion.for_face(model, face)
    assert motion.retarget is None and np.array_equal(motion.start, face)
    disp = np.random.default_rng(0).normal(0.0, 0.01, (3, 468, 2))
    np.testing.assert_allclose(motion.onto(face + disp), face + disp, atol=1e-12)


def test_a_template_model_starts_from_the_template_and_lands_on_the_face() -> None:
    torch.manual_seed(0)
    model = CMMNet(CMMNetConfig(motion_face="template")).eval()
    torch.nn.init.normal_(model.vae.to_coords.weight, std=0.01)  # an untrained VAE never moves
    face = _face()
    motion = FaceMotion.for_face(model, face)
    np.testing.assert_array_equal(motion.start, canonical_template())
    template_motion = np.random.default_rng(1).normal(0.0, 0.01, (5, 468, 2))
    expected = face + Retarget.between(canonical_template(), face).apply(template_motion)
    np.testing.assert_allclose(motion.onto(canonical_template() + template_motion), expected, atol=1e-12)

    noise = model.conditional.sample_noise(2, 6, generator=torch.Generator().manual_seed(2))
    multi, single = generate_on_faces(model, [motion, motion], torch.tensor([0, 1]), noise)
    assert multi.shape == (2, model.modes, 6, 468, 2) and single.shape == (2, 6, 468, 2)
    np.testing.assert_allclose(multi[:, :, 0], np.broadcast_to(face, multi[:, :, 0].shape), atol=1e-6)
    start = torch.from_numpy(canonical_template()).float()[None].expand(2, -1, -1)
    with torch.no_grad():
        on_template = model.generate(start, torch.tensor([0, 1]), noise).double().numpy()
    assert np.abs(on_template - on_template[:, :, :1]).max() > 1e-3, "the generator moved"
    np.testing.assert_allclose(multi, motion.onto(on_template), atol=1e-9)
    seqs = generate_landmarks(model, face, "posed", 3, 6, seed=1)
    assert seqs.shape == (3, 6, 468, 2)
    np.testing.assert_allclose(seqs[:, 0], np.broadcast_to(face, (3, 468, 2)), atol=1e-6)


def test_the_bench_step_retargets_like_the_engine() -> None:
    """The per-frame targets of the benchmark path apply each session's retargeting."""
    torch.manual_seed(0)
    model = CMMNet(CMMNetConfig(motion_face="template")).eval()
    inputs, _state, _noise = bench_inputs(model, 256, sessions=2, modes=2)
    assert inputs.motion_proj.shape == (2, 10, 936) and inputs.motion_delta.shape == (2, 936, 10)
    with torch.no_grad():
        landmarks = inputs.neutral_decoded[:, None].expand(-1, model.modes, -1, -1).flatten(0, 1) + 0.01
        target = targets_from(landmarks, inputs).reshape(2, 2, -1, 2)
    disp = np.full((468, 2), 0.01)
    for b in range(2):
        moved = disp.reshape(-1) + inputs.motion_delta[b].double().numpy() @ (
            inputs.motion_proj[b].double().numpy() @ disp.reshape(-1)
        )
        linear = inputs.to_crop[b].double().numpy()
        n = inputs.neutral.shape[1]
        want = inputs.neutral[b].double().numpy() + moved.reshape(468, 2)[:n] @ linear.T
        np.testing.assert_allclose(target[b, 0].double().numpy(), want, atol=1e-3)
