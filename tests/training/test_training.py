"""Training pieces on small real HDF5 files: the LIBERO-format reader/writer (and an official-layout
file), training windows, errors for mismatched data, the schedule, seeded/resumable training,
distillation variants and their lineage."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from vitabench.api.errors import VitabenchError
from vitabench.geometry import axis_angle_to_quat
from vitabench.training.data import Demo, DemoWriter, iter_demos, load_demo_actions, read_info
from vitabench.training.loop import TrainSettings, Windows, schedule

CAMERAS = ("agentview", "robot0_eye_in_hand")
INSTRUCTION = "pick up the alphabet soup and place it in the basket"


def make_demo(steps: int, seed: int, resolution: int = 32, action_dim: int = 7) -> Demo:
    rng = np.random.default_rng(seed)
    return Demo(
        actions=rng.uniform(-1, 1, (steps, action_dim)).astype(np.float32),
        images={camera: rng.integers(0, 255, (steps, resolution, resolution, 3), dtype=np.uint8) for camera in CAMERAS},
        ee_pos=rng.normal(size=(steps, 3)).astype(np.float32),
        ee_ori=rng.normal(scale=0.5, size=(steps, 3)).astype(np.float32),
        gripper_states=rng.normal(scale=0.02, size=(steps, 2)).astype(np.float32),
        joint_states=rng.normal(size=(steps, 7)).astype(np.float32),
        instruction=INSTRUCTION,
        attrs={"init_state": seed},
    )


def write_file(path: Path, lengths: tuple[int, ...] = (9, 6), resolution: int = 32, protocol: dict | None = None) -> Path:
    attrs = {"problem_info": {"language_instruction": INSTRUCTION}, "env_args": {"env_name": "libero_object"}}
    if protocol is not None:
        attrs["protocol"] = protocol
    with DemoWriter(path, attrs=attrs) as writer:
        for i, steps in enumerate(lengths):
            writer.append(make_demo(steps, i, resolution))
    return path


def test_writer_reader_round_trip(tmp_path: Path) -> None:
    path = write_file(tmp_path / "demos.hdf5")
    info = read_info(path)
    assert (info.n_demos, info.n_steps, info.resolution, info.cameras) == (2, 15, 32, CAMERAS)
    assert info.instructions == (INSTRUCTION,)
    demos = list(iter_demos(path))
    original = make_demo(9, 0)
    np.testing.assert_allclose(demos[0].actions, original.actions)
    np.testing.assert_array_equal(demos[0].images["agentview"], original.images["agentview"])
    assert demos[1].attrs["init_state"] == 1 and demos[1].attrs["num_samples"] == 6
    actions, instruction = load_demo_actions(path, 1)
    assert actions.shape == (6, 7) and instruction == INSTRUCTION


def test_reads_official_libero_layout(tmp_path: Path) -> None:
    """LIBERO's own files: instruction only in the problem_info JSON, 128 px, extra obs keys."""
    path = tmp_path / "libero.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "libero_object", "language_instruction": INSTRUCTION})
        data.attrs["env_args"] = json.dumps({"env_name": "OffScreenRenderEnv"})
        demo = data.create_group("demo_0")
        demo.create_dataset("actions", data=np.zeros((5, 7)))
        obs = demo.create_group("obs")
        obs.create_dataset("agentview_rgb", data=np.zeros((5, 128, 128, 3), np.uint8))
        obs.create_dataset("eye_in_hand_rgb", data=np.zeros((5, 128, 128, 3), np.uint8))
        for key, width in (("ee_pos", 3), ("ee_ori", 3), ("gripper_states", 2), ("joint_states", 7), ("ee_states", 6)):
            obs.create_dataset(key, data=np.zeros((5, width)))
    info = read_info(path)
    assert (info.resolution, info.cameras, info.instructions, info.protocol) == (128, CAMERAS, (INSTRUCTION,), None)
    (demo,) = iter_demos(path)
    assert demo.instruction == INSTRUCTION and demo.model_state().shape == (5, 8)


@pytest.mark.parametrize("rotation, size", [("euler", 8), ("rot6d", 11)])
def test_model_state_matches_the_policy_runtime(rotation: str, size: int) -> None:
    """Training reads the orientation as stored (axis-angle); the policy from the env's quaternion,
    also when the gripper points down (w and the Euler roll flip there)."""
    from vitabench.geometry import quat_to_axis_angle
    from vitabench.models.runtime import frame_from_observation

    demo = make_demo(3, 7)
    demo.ee_ori[2] = [np.pi * 1.02, 0.05, -0.03]  # gripper down, w < 0
    assert demo.model_state(rotation).shape == (3, size)
    for step in (1, 2):
        quat = axis_angle_to_quat(demo.ee_ori[step])
        np.testing.assert_allclose(quat_to_axis_angle(quat), demo.ee_ori[step], atol=1e-5)
        observation = {
            "images": {camera: demo.images[camera][step] for camera in CAMERAS},
            "state": {"ee_pos": demo.ee_pos[step], "ee_quat": quat.astype(np.float32), "gripper_qpos": demo.gripper_states[step]},
            "instruction": INSTRUCTION,
        }
        runtime = frame_from_observation(observation, CAMERAS, rotation).state
        np.testing.assert_allclose(demo.model_state(rotation)[step], runtime, atol=1e-5)


def test_windows_pad_and_mask(tmp_path: Path) -> None:
    path = write_file(tmp_path / "demos.hdf5", lengths=(9, 6))
    windows = Windows([path], CAMERAS, history=4, chunk=3)
    assert len(windows) == 15
    rows = np.array([0, 8, 10])  # demo 0 step 0, demo 0 step 8 (last), demo 1 step 1
    batch, targets, mask = windows.batch(rows, np.random.default_rng(0))
    assert batch.frame_mask.tolist() == [[True, False, False, False], [True] * 4, [True, True, False, False]]
    demo = make_demo(9, 0)
    # each distinct frame is held once; the windows' real frames index them in row-major order
    assert batch.images["agentview"].shape[0] == 1 + 4 + 2
    frames = batch.images["agentview"][batch.frame_index].numpy()
    np.testing.assert_array_equal(frames[1 + 3], demo.images["agentview"][8])
    np.testing.assert_array_equal(frames[0], demo.images["agentview"][0])
    np.testing.assert_allclose(targets[1, 0].numpy(), demo.actions[5:8])
    assert mask[1, 3].tolist() == [True, False, False]  # the last step has one action left
    assert mask[1, 2].tolist() == [True, True, False]
    assert not mask[0, 1:].any()


def test_segments_share_frames_and_shift_them_alike(tmp_path: Path) -> None:
    """Consecutive windows of one demo encode each frame once; the random shift moves a demo's
    frames alike, so a frame shared by two windows is the same image in both."""
    path = write_file(tmp_path / "demos.hdf5", lengths=(9, 6))
    windows = Windows([path], CAMERAS, history=4, chunk=3)
    rows = windows.sample(np.random.default_rng(1), batch_size=8, windows_per_segment=4)
    assert len(rows) <= 8
    for segment in range(0, len(rows), 4):
        ends = windows.index[rows[segment : segment + 4]]
        assert len(set(ends[:, 0])) == 1 and (np.diff(ends[:, 1]) == -1).all()
    batch, _, _ = windows.batch(rows, np.random.default_rng(2), shift=4)
    lengths = batch.frame_mask.sum(dim=1).numpy()
    assert batch.images["agentview"].shape[0] < lengths.sum()
    frames = batch.images["agentview"][batch.frame_index].numpy()  # every window's real frames, row-major
    newest = np.cumsum(lengths) - 1
    demos = {d: make_demo(length, d).images["agentview"] for d, length in enumerate((9, 6))}
    unshifted = [np.array_equal(frames[newest[row]], demos[d][t]) for row, (d, t) in enumerate(windows.index[rows])]
    assert not all(unshifted)
    # the frame two windows share is one image: window r+1 ends one step before window r
    np.testing.assert_array_equal(frames[newest[1]], frames[newest[0] - 1])


def test_statistics_and_normalized_targets() -> None:
    """The data's statistics; a normalised decoder is trained and decoded in units of the arm scale."""
    import torch

    from vitabench.models.common import ActionOutput, action_loss

    scale = torch.tensor([0.5, 0.25, 1.0, 0.1, 0.1, 0.1])
    arm = torch.tensor([[0.5, -0.5, 0.2, 0.0, 0.1, -0.1]])
    output = ActionOutput(arm=arm, gripper_logit=torch.tensor([[3.0]]), arm_scale=scale)
    np.testing.assert_allclose(output.actions()[0, :6].numpy(), (arm * scale)[0].numpy(), rtol=1e-6)
    target = torch.cat([arm * scale, torch.tensor([[1.0]])], dim=-1)
    assert action_loss(output, target).item() < 0.01 * 0.05  # only the (small) gripper BCE is left
    clipped = output.arm_target(torch.tensor([[5.0, 0, 0, 0, 0, 0, -1.0]]))
    assert clipped[0, 0].item() == 1.0


def test_window_statistics(tmp_path: Path) -> None:
    path = write_file(tmp_path / "demos.hdf5", lengths=(9, 6))
    windows = Windows([path], CAMERAS, history=2, chunk=3, state_rotation="rot6d")
    mean, std, scale = windows.statistics()
    states = np.concatenate([make_demo(n, d).model_state("rot6d") for d, n in enumerate((9, 6))])
    np.testing.assert_allclose(mean, states.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.maximum(states.std(0), 1e-3), rtol=1e-5)
    actions = np.concatenate([make_demo(n, d).actions for d, n in enumerate((9, 6))])[:, :6]
    np.testing.assert_allclose(scale, np.maximum(np.percentile(np.abs(actions), 99, axis=0), 0.05), rtol=1e-5)


def test_mismatched_data_is_refused(tmp_path: Path) -> None:
    small = write_file(tmp_path / "small.hdf5", resolution=32)
    large = write_file(tmp_path / "large.hdf5", resolution=48)
    with pytest.raises(VitabenchError, match=r"images of \[32, 48\] px; accepted: files of one image size"):
        Windows([small, large], CAMERAS, 2, 3)
    with pytest.raises(VitabenchError, match="lacks camera"):
        Windows([small], ("frontview",), 2, 3)
    bad = tmp_path / "bad.hdf5"
    with DemoWriter(bad, attrs={"problem_info": {"language_instruction": INSTRUCTION}}) as writer:
        writer.append(make_demo(4, 0, action_dim=6))
    with pytest.raises(VitabenchError, match=r"actions has shape \(4, 6\); accepted: \(T, 7\)"):
        read_info(bad)
    with pytest.raises(VitabenchError, match="no such file"):
        read_info(tmp_path / "missing.hdf5")


def test_schedule_warms_up_then_decays() -> None:
    settings = TrainSettings(steps=100, warmup=0.1)
    factors = [schedule(step, settings) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[99] == pytest.approx(1 / 90)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    with pytest.raises(VitabenchError, match="lr=0"):
        TrainSettings(lr=0)


def _teacher(seed: int = 3):
    import dataclasses

    import torch

    from vitabench.models.teacher import TEACHER_PRESETS, TeacherModel

    torch.manual_seed(seed)
    return TeacherModel.build(dataclasses.replace(TEACHER_PRESETS["tiny"], history=2))


def _train(model, data: Path, out: Path, settings: TrainSettings, *, resume: bool = False, crash_at: int | None = None):
    from vitabench.models.common import action_loss
    from vitabench.training.loop import train

    calls = []

    def loss_fn(batch, targets, mask):
        if crash_at is not None and len(calls) == crash_at:
            raise KeyboardInterrupt
        calls.append(1)
        return action_loss(model(batch).actions, targets, mask)

    windows = Windows([data], CAMERAS, history=2, chunk=3)
    return train(model, loss_fn, windows, settings, out, resume=resume, label="test", quiet=True)


@pytest.mark.model
def test_training_is_seeded_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    """One seed gives one loss curve; a run killed after its periodic state and resumed ends with
    the weights of an uninterrupted run."""
    import torch

    torch.set_num_threads(1)
    data = write_file(tmp_path / "demos.hdf5", resolution=64)
    settings = TrainSettings(steps=4, batch_size=2, lr=1e-3, seed=3, device="cpu", checkpoint_every=2)
    straight = _teacher()
    result = _train(straight, data, tmp_path / "straight", settings)
    assert _train(_teacher(), data, tmp_path / "again", settings).losses == result.losses

    with pytest.raises(KeyboardInterrupt):
        _train(_teacher(), data, tmp_path / "resumed", settings, crash_at=3)
    assert torch.load(tmp_path / "resumed" / "train_state.pt", weights_only=False)["step"] == 2
    with pytest.raises(VitabenchError, match="pass --resume"):
        _train(_teacher(), data, tmp_path / "resumed", settings)
    with pytest.raises(VitabenchError, match="--resume: .* settings"):
        _train(_teacher(), data, tmp_path / "resumed", TrainSettings(**{**settings.__dict__, "lr": 1e-2}), resume=True)
    resumed = _teacher(seed=99)  # its weights come from the saved state
    assert _train(resumed, data, tmp_path / "resumed", settings, resume=True).losses == result.losses
    for (name, value), other in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(value, other, msg=name)


@pytest.mark.model
def test_distillation_variants_and_their_errors(tmp_path: Path) -> None:
    """Stage 1 trains only token/state encoder/mapper; freeze-VLM leaves the LLM as stage 1 left it;
    only-ft starts from the teacher's decoder; lineage names each variant; mismatched data or
    options are refused."""
    import torch

    from vitabench.training.distill import StudentOptions, align, build_student, finetune, load_teacher
    from vitabench.models.checkpoint import read_lineage
    from vitabench.training.teacher import train_teacher

    torch.set_num_threads(1)
    data = write_file(tmp_path / "demos.hdf5", resolution=64, lengths=(5, 4))
    one_step = TrainSettings(steps=2, batch_size=2, lr=1e-3, device="cpu")
    train_teacher([data], tmp_path / "teacher", settings=one_step, overrides={"history": 2}, quiet=True)
    teacher, _ = load_teacher(tmp_path / "teacher")

    only_ft = build_student(teacher, "tiny", StudentOptions(), seed=0)
    for name, value in teacher.action_decoder.state_dict().items():
        torch.testing.assert_close(only_ft.action_decoder.state_dict()[name], value)

    align(tmp_path / "teacher", "tiny", [data], tmp_path / "align", settings=one_step, quiet=True)
    aligned_vlm = _weights(tmp_path / "align")
    fresh = _weights_of(only_ft)  # the same seed builds the same student: stage 1 left its VLM untouched
    assert all(np.array_equal(value, fresh[k]) for k, value in aligned_vlm.items() if k.startswith("vlm."))
    for name in ("action_decoder.trunk.0.weight",):  # frozen in stage 1: still the teacher's decoder
        np.testing.assert_array_equal(aligned_vlm[name], teacher.action_decoder.trunk[0].weight.detach().numpy())

    finetune([data], tmp_path / "freeze", from_dir=tmp_path / "align", options=StudentOptions(freeze_vlm=True),
             settings=one_step, quiet=True)
    frozen = _weights(tmp_path / "freeze")
    assert all(np.array_equal(frozen[k], aligned_vlm[k]) for k in aligned_vlm if k.startswith("vlm."))
    assert not all(np.array_equal(frozen[k], aligned_vlm[k]) for k in aligned_vlm if k.startswith("mapper."))
    finetune([data], tmp_path / "only_ft", teacher_dir=tmp_path / "teacher", backbone="tiny", settings=one_step, quiet=True)
    assert [read_lineage(tmp_path / d)["variant"] for d in ("teacher", "align", "freeze", "only_ft")] == [
        "teacher", "align", "freeze-vlm", "only-ft"]

    with pytest.raises(VitabenchError, match="was trained with state_encoder=True; stage 2 must keep it"):
        finetune([data], tmp_path / "x", from_dir=tmp_path / "align", options=StudentOptions(state_encoder=False),
                 settings=one_step, quiet=True)
    with pytest.raises(VitabenchError, match="--freeze-vlm applies to --stage finetune .*accepted in stage 1: --train-vision or neither"):
        align(tmp_path / "teacher", "tiny", [data], tmp_path / "v", options=StudentOptions(freeze_vlm=True), settings=one_step, quiet=True)
    finetune([data], tmp_path / "only_ft_long", from_dir=tmp_path / "only_ft", settings=one_step, quiet=True)
    continued = read_lineage(tmp_path / "only_ft_long")  # stage 2 continued: one more finetune, same variant
    assert continued["variant"] == "only-ft" and [s["stage"] for s in continued["stages"]] == ["finetune", "finetune"]
    assert not all(np.array_equal(value, _weights(tmp_path / "only_ft")[k]) for k, value in _weights(tmp_path / "only_ft_long").items())
    small = write_file(tmp_path / "small.hdf5", resolution=32)
    with pytest.raises(VitabenchError, match="images are 32 px but the teacher .* was trained on 64 px"):
        align(tmp_path / "teacher", "tiny", [small], tmp_path / "z", settings=one_step, quiet=True)
    with pytest.raises(VitabenchError, match="--backbone 'nowhere'; accepted: tiny, cpu, small \\(an untrained VLM\\) or a local"):
        align(tmp_path / "teacher", "nowhere", [data], tmp_path / "w", settings=one_step, quiet=True)


def _weights(directory: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(directory / "model.safetensors"))


def _weights_of(model) -> dict[str, np.ndarray]:
    return {name: value.detach().numpy() for name, value in model.state_dict().items()}


@pytest.mark.model
def test_ship_checkpoint_writes_an_fp16_copy_where_asked_and_refuses_a_bad_source(tmp_path: Path, monkeypatch) -> None:
    """`scripts/ship_checkpoint.py weights SRC NAME --into DIR`: DIR/NAME holds fp16 weights whose
    lineage ends with a ship stage naming the source's weights, checkpoints/ is left alone, and a
    source that is no checkpoint is one error line with nothing written."""
    import importlib.util
    import sys

    import torch
    from safetensors import safe_open

    from vitabench.models.checkpoint import weights_hash
    from vitabench.models.checkpoint import read_lineage
    from vitabench.training.teacher import train_teacher

    torch.set_num_threads(1)
    data = write_file(tmp_path / "demos.hdf5", resolution=64, lengths=(5, 4))
    train_teacher([data], tmp_path / "teacher", settings=TrainSettings(steps=2, batch_size=2, lr=1e-3, device="cpu"),
                  overrides={"history": 2}, quiet=True)
    path = Path(__file__).resolve().parents[2] / "scripts" / "ship_checkpoint.py"
    spec = importlib.util.spec_from_file_location("ship_checkpoint", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shipped_before = sorted(p.name for p in (script.ROOT / "checkpoints").iterdir())

    def ship(source: Path) -> None:
        monkeypatch.setattr(sys, "argv", ["ship_checkpoint.py", "weights", str(source), "mine", "--into", str(tmp_path / "fp16")])
        script.main()

    for _ in range(2):  # shipping again replaces the copy
        ship(tmp_path / "teacher")
    copy = tmp_path / "fp16" / "mine"
    with safe_open(copy / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float16}
    stages = read_lineage(copy)["stages"]
    assert [stage["stage"] for stage in stages] == ["teacher", "ship"]
    assert stages[-1]["options"]["source_weights_hash"] == weights_hash(tmp_path / "teacher" / "model.safetensors")
    assert stages[-1]["weights_hash"] == weights_hash(copy / "model.safetensors")
    assert sorted(p.name for p in (script.ROOT / "checkpoints").iterdir()) == shipped_before
    assert sorted(p.name for p in (tmp_path / "fp16").iterdir()) == ["mine"]

    with pytest.raises(SystemExit) as refused:
        ship(tmp_path / "nowhere")
    message = str(refused.value.code)
    assert message.startswith("error: checkpoint=") and "\n" not in message and "nowhere" in message and "shipped:" in message
    assert sorted(p.name for p in (tmp_path / "fp16").iterdir()) == ["mine"]
