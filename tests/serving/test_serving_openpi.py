"""openpi's own LIBERO client against `vitabench serve`: real servers in subprocesses on 127.0.0.1,
the real ``openpi_client``, messages built exactly as openpi's ``examples/libero/main.py`` builds them.
The probe policy the conversion tests serve lives in ``served_policies``."""

from __future__ import annotations

from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import pytest
from openpi_client import image_tools
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from robosuite.utils.transform_utils import quat2axisangle

from served_policies import BOOT_CLI, BOOT_PROBE, ProbePolicy, start, stop
from vitabench.api.errors import VitabenchError
from vitabench.api.policy import PolicySpec
from vitabench.api.protocol import load_protocol
from vitabench.api.suite import Task
from vitabench.plugins import make_policy
from vitabench.serving import OpenpiConversion, RequestError, served_protocol
from vitabench.policy_wrappers import ChunkExecution

PROMPT = "put the black bowl on the plate"
#: End-effector orientations (robosuite's x, y, z, w); the second has w < 0 (axis-angle longer than π).
EEF_QUATS = (np.array([0.99, 0.05, -0.10, 0.02]), np.array([0.70, 0.10, 0.10, -0.70]), np.array([0.2, -0.9, 0.1, 0.3]))
CAMERA_KEYS = {"agentview": "observation/image", "robot0_eye_in_hand": "observation/wrist_image"}


def libero_obs(step: int, quat: np.ndarray, resolution: int = 256) -> dict[str, np.ndarray]:
    """A raw LIBERO observation as robosuite returns it (float64 state, uint8 renders as rendered):
    the agentview's top-left quadrant is bright, the rest dark, with per-step noise."""
    rng = np.random.default_rng(step)
    agentview = rng.integers(0, 40, (resolution, resolution, 3), dtype=np.uint8)
    agentview[: resolution // 2, : resolution // 2] += 200
    return {
        "agentview_image": agentview,
        "robot0_eye_in_hand_image": rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8),
        "robot0_eef_pos": np.array([-0.2, 0.01, 1.1]) + rng.normal(0, 0.05, 3),
        "robot0_eef_quat": quat / np.linalg.norm(quat),
        "robot0_gripper_qpos": np.array([0.039, -0.039]) + rng.normal(0, 0.001, 2),
    }


def openpi_element(obs: dict[str, np.ndarray], rotate: bool = True) -> dict:
    """What openpi's examples/libero/main.py sends for ``obs`` (``rotate=False``: a client sending raw renders)."""
    images = []
    for key in ("agentview_image", "robot0_eye_in_hand_image"):
        image = np.ascontiguousarray(obs[key][::-1, ::-1] if rotate else obs[key])
        images.append(image_tools.convert_to_uint8(image_tools.resize_with_pad(image, 224, 224)))
    return {
        "observation/image": images[0],
        "observation/wrist_image": images[1],
        "observation/state": np.concatenate(
            (obs["robot0_eef_pos"], quat2axisangle(obs["robot0_eef_quat"].copy()), obs["robot0_gripper_qpos"])
        ),
        "prompt": str(PROMPT),
    }


def served_observation(
    obs: dict[str, np.ndarray], element: dict, spec: PolicySpec, resolution: int, orientation: str, sent: str = "rot180"
) -> dict:
    """The observation the server should give ``spec``'s policy: the runner's state keys of ``obs``
    and the images of ``element`` (sent in orientation ``sent``) turned to ``orientation``, at ``resolution`` px."""
    state = {
        "ee_pos": obs["robot0_eef_pos"].astype(np.float32),
        "ee_quat": obs["robot0_eef_quat"].astype(np.float32),
        "ee_axis_angle": quat2axisangle(obs["robot0_eef_quat"].copy()).astype(np.float32),
        "gripper_qpos": obs["robot0_gripper_qpos"].astype(np.float32),
    }
    images = {}
    for camera in spec.cameras:
        image = element[CAMERA_KEYS[camera]]
        turned = np.ascontiguousarray(image[::-1, ::-1] if orientation != sent else image)
        images[camera] = image_tools.resize_with_pad(turned, resolution, resolution)
    return {"images": images, "state": {k: state[k] for k in spec.state_keys}, "instruction": PROMPT}


def openpi_client(url: str) -> WebsocketClientPolicy:
    """The client as openpi's LIBERO example makes it: ``WebsocketClientPolicy(host, port)``."""
    address = urlparse(url)
    return WebsocketClientPolicy(address.hostname, address.port)


def control(client: WebsocketClientPolicy, message: dict) -> dict | str:
    """Send a ``__ctrl__`` message as newer openpi clients' ``episode_start``/``episode_end`` do (the
    installed 0.1.2 has neither): the reply, unpacked, or the error frame's text."""
    from openpi_client import msgpack_numpy

    client._ws.send(client._packer.pack(message))
    reply = client._ws.recv()
    return reply if isinstance(reply, str) else msgpack_numpy.unpackb(reply)


def episode_start(client: WebsocketClientPolicy, task: str, episode_id: int) -> dict | str:
    return control(client, {"__ctrl__": "episode_start", "__experiment__": "libero_object", "__task__": task,
                            "__episode_id__": episode_id})


def close_enough(a: np.ndarray, b: np.ndarray) -> bool:
    # ee_quat arrives as axis-angle and is turned back: equal to the runner's within float32 rounding
    return np.allclose(a, b, rtol=1e-5, atol=1e-5)


#: `vitabench serve` of each model policy, a process that imports transformers and builds the model
@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.model) for name in ("teacher", "vita_vla")])
def served_model(request) -> Iterator[tuple[str, str]]:
    proc, url = start(BOOT_CLI, "serve", "--policy", request.param, "--policy-arg", "preset=tiny", "--port", "0")
    yield request.param, url
    stop(proc)


def test_openpi_libero_client_drives_a_served_model(served_model):
    name, url = served_model
    local = make_policy(name, preset="tiny")  # seed 0: the served weights
    client = openpi_client(url)
    metadata = client.get_server_metadata()
    assert metadata["openpi"]["protocol"].startswith("standard@")  # a preset's default protocol
    resolution = metadata["openpi"]["resolution"]
    assert resolution == load_protocol("standard").resolution and metadata["openpi"]["policy_orientation"] == "rot180"

    task = Task(suite="openpi", task_id=0, name=PROMPT, instruction=PROMPT, n_init_states=0)
    local.reset(task, slot=0)
    served_chunks = []
    for step, quat in enumerate(EEF_QUATS):
        obs = libero_obs(step, quat)
        element = openpi_element(obs)
        assert element["observation/state"].dtype == np.float64 and element["observation/state"].shape == (8,)
        assert element["observation/image"].shape == (224, 224, 3) and element["observation/image"].dtype == np.uint8
        served = client.infer(element)["actions"]
        assert served.shape == (local.spec.chunk, 7)
        expected = local.act([served_observation(obs, element, local.spec, resolution, "rot180")], [0])[0]
        assert close_enough(served, expected), (served, expected)
        served_chunks.append(served)
    assert not close_enough(served_chunks[0], served_chunks[1])  # the comparison sees the inputs

    # the orientation matters to this model: a raw-oriented image would have given other actions
    unturned = make_policy(name, preset="tiny")
    unturned.reset(task, slot=0)
    obs = libero_obs(0, EEF_QUATS[0])
    wrong = unturned.act([served_observation(obs, openpi_element(obs), unturned.spec, resolution, "raw")], [0])[0]
    assert not close_enough(wrong, served_chunks[0])

    # newer openpi clients announce each episode: the history starts afresh even for the same prompt
    assert episode_start(client, PROMPT, episode_id=1) == {"__ack__": "episode_start"}
    served = client.infer(openpi_element(obs))["actions"]
    continued = local.act([served_observation(obs, openpi_element(obs), local.spec, resolution, "rot180")], [0])[0]
    local.reset(task, slot=0)
    fresh = local.act([served_observation(obs, openpi_element(obs), local.spec, resolution, "rot180")], [0])[0]
    assert close_enough(served, fresh) and not close_enough(served, continued)


def test_vitabench_client_keeps_its_own_messages_on_the_same_server(served_model):
    name, url = served_model
    openpi = openpi_client(url)  # both conventions at once, on separate connections
    remote = make_policy("remote", url=url)
    local = make_policy(name, preset="tiny")
    assert remote.is_vitabench and remote.spec == local.spec
    task = Task(suite="libero_object", task_id=0, name="t", instruction=PROMPT, n_init_states=1)
    for slot in (0, 1):
        remote.reset(task, slot=slot, seed=7)
        local.reset(task, slot=slot, seed=7)
    for step in range(2):
        # what the runner renders under standard: the raw render rotated 180°, at 256 px
        batch = []
        for slot in (0, 1):
            obs = libero_obs(10 * step + slot, EEF_QUATS[slot])
            batch.append({
                "images": {"agentview": np.ascontiguousarray(obs["agentview_image"][::-1, ::-1]),
                           "robot0_eye_in_hand": np.ascontiguousarray(obs["robot0_eye_in_hand_image"][::-1, ::-1])},
                "state": {"ee_pos": obs["robot0_eef_pos"].astype(np.float32),
                          "ee_quat": obs["robot0_eef_quat"].astype(np.float32),
                          "gripper_qpos": obs["robot0_gripper_qpos"].astype(np.float32)},
                "instruction": PROMPT,
            })
        np.testing.assert_allclose(remote.act(batch, [0, 1]), local.act(batch, [0, 1]), rtol=1e-5, atol=1e-5)
        assert openpi.infer(openpi_element(libero_obs(step, EEF_QUATS[0])))["actions"].shape[-1] == 7
    remote.close()


@pytest.mark.parametrize(
    ("protocol", "client_orientation"),
    [("vita_vla_paper", "rot180"), ("standard", "rot180"), ("vita_vla_paper", "raw")],
)
def test_a_policy_with_other_state_keys_gets_exactly_its_keys_and_orientation(protocol, client_orientation):
    proc, url = start(BOOT_PROBE, protocol, client_orientation, "ee_quat,ee_axis_angle", "agentview")
    try:
        client = openpi_client(url)
        under = load_protocol(protocol)
        probe = ProbePolicy()
        for step, quat in enumerate(EEF_QUATS):
            obs = libero_obs(step, quat)
            element = openpi_element(obs, rotate=client_orientation == "rot180")
            served = client.infer(element)["actions"]
            # the state the policy asked for, in its convention: ee_quat is the robot's own quaternion
            np.testing.assert_allclose(served[0, :4], obs["robot0_eef_quat"], atol=1e-6)
            np.testing.assert_allclose(served[0, 4:], quat2axisangle(obs["robot0_eef_quat"].copy()), atol=1e-6)
            # images at the protocol's resolution, turned to its orientation (the bright quadrant of the raw render)
            assert served[1, :2].tolist() == [under.resolution] * 2
            top_left, bottom_right = served[1, 2:4]
            bright_corner_seen_top_left = under.image_orientation == "raw"
            assert (top_left > 150 > bottom_right) if bright_corner_seen_top_left else (bottom_right > 150 > top_left)
            # the in-process policy on the observation the server should have built
            expected = probe.act([served_observation(
                obs, element, probe.spec, under.resolution, under.image_orientation, client_orientation
            )])[0]
            np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-5)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def probe_server() -> Iterator[str]:
    proc, url = start(BOOT_PROBE, "standard", "rot180", "ee_pos,ee_quat,gripper_qpos", "agentview,robot0_eye_in_hand")
    yield url
    stop(proc)


def test_bad_openpi_messages_get_one_error_frame_and_every_client_is_still_served(probe_server):
    bad_client, other_client = openpi_client(probe_server), openpi_client(probe_server)
    element = openpi_element(libero_obs(0, EEF_QUATS[0]))
    accepted_state = r"accepted: 8 numbers \(ee_pos 3 \+ ee_axis_angle 3 \+ gripper_qpos 2\)"
    gray = element["observation/image"][..., 0]
    rgba = np.zeros((224, 224, 4), np.uint8)
    cases = [
        ({"observation/state": element["observation/state"][:7]}, "observation/state has 7 values; " + accepted_state),
        ({"observation/state": np.zeros(9)}, "observation/state has 9 values; " + accepted_state),
        ({"observation/state": "0 0 0"}, "observation/state is a value of type str; " + accepted_state),
        ({"observation/image": gray}, r"observation/image is a uint8 array of shape \(224, 224\); accepted: a uint8 array \[H, W, 3\]"),
        ({"observation/wrist_image": rgba}, r"observation/wrist_image is a uint8 array of shape \(224, 224, 4\)"),
        ({"observation/image": element["observation/image"].astype(np.float32)}, "observation/image is a float32 array"),
        ({"prompt": 3}, "prompt is a value of type int; accepted: a string"),
        ({"images": {}}, r"mixes openpi keys \(observation/image, .*\) with vitabench keys \(images\)"),
    ]
    for change, message in cases:
        with pytest.raises(RuntimeError, match=message):
            bad_client.infer({**element, **change})
        assert other_client.infer(element)["actions"].shape == (2, 7)  # another connection is served meanwhile
    without_wrist = {k: v for k, v in element.items() if k != "observation/wrist_image"}
    with pytest.raises(RuntimeError, match="lacks observation/wrist_image; the policy needs camera robot0_eye_in_hand"):
        bad_client.infer(without_wrist)
    # the failing connection itself goes on: the next good message is answered, not a stale error frame
    np.testing.assert_array_equal(bad_client.infer(element)["actions"], other_client.infer(element)["actions"])


def test_episode_messages_are_acknowledged_as_openpi_acknowledges_them(probe_server):
    client = openpi_client(probe_server)
    assert control(client, {"__ctrl__": "episode_end", "__success__": True}) == {"__ack__": "episode_end"}
    assert control(client, {"__ctrl__": "pause"}) == {"__ack__": "ignored"}
    bad_task = episode_start(client, 3, episode_id=0)
    assert bad_task == "error: __task__ is a value of type int; accepted: a string (the instruction)"
    assert episode_start(client, PROMPT, episode_id=0) == {"__ack__": "episode_start"}
    assert client.infer(openpi_element(libero_obs(0, EEF_QUATS[0])))["actions"].shape == (2, 7)


def test_a_state_key_openpi_does_not_carry_is_named_and_vitabench_observations_still_work():
    proc, url = start(BOOT_PROBE, "standard", "rot180", "joint_pos", "agentview")
    try:
        client = openpi_client(url)
        with pytest.raises(RuntimeError, match="needs state key.s. joint_pos, which openpi's LIBERO observation/state"):
            client.infer(openpi_element(libero_obs(0, EEF_QUATS[0])))
        own = {
            "images": {"agentview": np.zeros((32, 32, 3), np.uint8)},
            "state": {"joint_pos": np.arange(7, dtype=np.float32)},
            "instruction": PROMPT,
        }
        np.testing.assert_array_equal(client.infer(own)["actions"][0], np.arange(7))
    finally:
        stop(proc)


def test_served_protocol_follows_the_checkpoint_and_refuses_another():
    assert served_protocol(ProbePolicy()).name == "standard"
    paper = load_protocol("vita_vla_paper")
    trained = {"name": paper.name, "version": paper.version, "hash": paper.hash, "ref": paper.ref}
    wrapped = ChunkExecution(ProbePolicy(trained_protocol=trained), 1)  # forwarded by wrappers
    assert served_protocol(wrapped) == paper
    with pytest.raises(VitabenchError, match="trained under protocol vita_vla_paper@2#.*differ from standard@2#.*resolution 128 vs 256"):
        served_protocol(wrapped, load_protocol("standard"))
    spec = PolicySpec(cameras=("agentview",), resolution=64)
    assert OpenpiConversion.for_policy(spec, paper).resolution == 64  # the policy's own resolution first
    with pytest.raises(VitabenchError, match="client image orientation 'flipped'; accepted: raw, rot180"):
        OpenpiConversion.for_policy(spec, paper, "flipped")


def test_a_camera_openpi_does_not_carry_is_named():
    conversion = OpenpiConversion.for_policy(PolicySpec(cameras=("frontview",), state_keys=()), load_protocol("standard"))
    with pytest.raises(RequestError, match=r"needs camera 'frontview', which .* accepted: agentview \(observation/image\), robot0_eye_in_hand"):
        conversion.observation(openpi_element(libero_obs(0, EEF_QUATS[0])))
