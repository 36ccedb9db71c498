"""Serve any vitabench policy over a websocket, in the openpi convention.

Wire format (msgpack with numpy arrays, ``openpi_client.msgpack_numpy``):

* on connect the server sends a metadata dict: ``{"server": "vitabench", "protocol": 1,
  "policy": name, "policy_args": {...}, "spec": {PolicySpec fields}, "max_message_bytes": N,
  "openpi": {OpenpiConversion fields}, "provenance": {Provenance fields}}`` (a ``remote`` client
  forwards the provenance, so ``vitabench run`` checks and records a served checkpoint as its own);
* every request is one binary msgpack map, answered by one binary msgpack map:

  - ``{"vitabench/reset": {"task": {Task fields}, "slot": int, "seed": int | None}}`` resets the
    client's ``slot`` and answers ``{"ok": True}``;
  - ``{"vitabench/act": {"observations": [obs, ...], "slots": [int, ...]}}`` is one batched ``act``
    on vitabench observations and answers ``{"actions": float32[B, chunk, 7]}``;
  - ``{"__ctrl__": "episode_start", "__task__": str, ...}`` (newer openpi clients'
    ``episode_start``) resets the client's slot 0 for that instruction and answers
    ``{"__ack__": "episode_start"}``; ``episode_end`` and any other ``__ctrl__`` are only
    acknowledged, as openpi's own server does;
  - anything else is a plain openpi ``infer(obs)`` for the client's slot 0 and answers
    ``{"actions": float32[chunk, 7]}``. ``obs`` is told apart by its keys: with openpi's LIBERO
    keys (``observation/image``, ``observation/wrist_image``, ``observation/state``, ``prompt``)
    it is converted by :class:`OpenpiConversion` into the observation the runner would give the
    policy; otherwise it is a vitabench observation (``images``, ``state``, ``instruction``) and
    goes to the policy as it is. A map with keys of both conventions is refused.
    The slot is reset implicitly on its first request and whenever the instruction changes.

* an error is answered with ONE text frame ``"error: <what is wrong>"`` (openpi clients raise on
  a text reply); the connection stays open and the server keeps serving every client. A message
  above ``max_message_bytes`` gets such an error; one above twice that is refused by the websocket
  layer itself (close code 1009), so the server never buffers more than that.

Slots are per connection: two clients may both use slot 0, the server maps each
``(connection, slot)`` to its own slot of the policy, and releases those slots' policy state
(``release(slot)``) when the connection closes. Calls into the policy are serialised.
``GET /healthz`` answers 200 like openpi's server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import itertools
import signal
import threading
from typing import Any, Callable, Mapping, Sequence, get_args

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import STATE_SIZES, Policy, PolicySpec, check_actions, policy_provenance, release_slot
from vitabench.api.protocol import ImageOrientation, Protocol
from vitabench.api.suite import Task

RESET_KEY = "vitabench/reset"
ACT_KEY = "vitabench/act"
CONTROL_KEY = "__ctrl__"
WIRE_PROTOCOL = 1
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: openpi LIBERO image key -> vitabench camera.
OPENPI_CAMERAS: dict[str, str] = {
    "observation/image": "agentview",
    "observation/wrist_image": "robot0_eye_in_hand",
}

#: What openpi's LIBERO client concatenates into ``observation/state``, in order (8 values).
OPENPI_STATE_KEYS: tuple[str, ...] = ("ee_pos", "ee_axis_angle", "gripper_qpos")

#: openpi's LIBERO client rotates every render by 180° before sending it.
OPENPI_CLIENT_ORIENTATION: ImageOrientation = "rot180"

#: The protocol a policy without a trained protocol is served under (``vitabench run``'s default).
DEFAULT_PROTOCOL = "standard"

ORIENTATIONS: tuple[str, ...] = get_args(ImageOrientation)

#: The keys of a vitabench observation (see :mod:`vitabench.api.policy`).
VITABENCH_OBSERVATION_KEYS: tuple[str, ...] = ("images", "state", "instruction", "privileged")


class RequestError(VitabenchError):
    """A request the server cannot use; answered with an error frame."""


def spec_to_dict(spec: PolicySpec) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}


def spec_from_dict(data: Mapping[str, Any]) -> PolicySpec:
    fields = {f.name for f in dataclasses.fields(PolicySpec)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
    return PolicySpec(**values)


def task_to_dict(task: Task) -> dict[str, Any]:
    return {**dataclasses.asdict(task), "source": dict(task.source)}


def task_from_dict(data: Mapping[str, Any]) -> Task:
    fields = {f.name for f in dataclasses.fields(Task)}
    missing = {"suite", "task_id", "name", "instruction"} - set(data)
    if missing:
        raise RequestError(f"reset task lacks {', '.join(sorted(missing))}; accepted: the fields of vitabench Task")
    values = {k: v for k, v in data.items() if k in fields}
    values.setdefault("n_init_states", 0)
    return Task(**values)


def openpi_state(state: Mapping[str, Any], keys: Sequence[str]) -> np.ndarray:
    """openpi's flat state: the ``keys`` of a vitabench state concatenated, float64 as openpi's
    LIBERO client sends it (LIBERO: :data:`OPENPI_STATE_KEYS`, 8 values)."""
    return np.concatenate([np.asarray(state[k], dtype=np.float64).reshape(-1) for k in keys])


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {tuple(value.shape)}"
    return f"a value of type {type(value).__name__}"


def _is_rgb_image(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype == np.uint8
        and value.ndim == 3
        and value.shape[2] == 3
        and value.shape[0] > 0
        and value.shape[1] > 0
    )


@dataclasses.dataclass(frozen=True)
class OpenpiConversion:
    """How an openpi LIBERO observation becomes the one the runner would give the served policy.

    Images arrive at any size in ``client_orientation``; the policy gets its ``cameras`` turned to
    ``policy_orientation`` (``raw`` or ``rot180``) and resized to ``resolution`` px with
    ``openpi_client.image_tools.resize_with_pad`` (a plain bilinear resize for square images). ``observation/state`` (ee_pos,
    axis-angle as robosuite's ``quat2axisangle``, gripper joints) gives exactly the policy's
    ``state_keys`` as float32; ``ee_quat`` comes from the axis-angle by
    :func:`vitabench.geometry.axis_angle_to_quat`. ``protocol`` names where ``policy_orientation``
    and ``resolution`` come from.
    """

    cameras: tuple[str, ...]
    state_keys: tuple[str, ...]
    resolution: int
    policy_orientation: str
    client_orientation: str
    protocol: str

    @classmethod
    def for_policy(
        cls, spec: PolicySpec, protocol: Protocol, client_orientation: str = OPENPI_CLIENT_ORIENTATION
    ) -> OpenpiConversion:
        """The conversion for ``spec`` served under ``protocol`` to clients sending ``client_orientation``."""
        if client_orientation not in ORIENTATIONS:
            raise VitabenchError(f"client image orientation {client_orientation!r}; accepted: {', '.join(ORIENTATIONS)}")
        return cls(
            cameras=tuple(spec.cameras),
            state_keys=tuple(spec.state_keys),
            resolution=spec.resolution or protocol.resolution,
            policy_orientation=protocol.image_orientation,
            client_orientation=client_orientation,
            protocol=protocol.ref,
        )

    def observation(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The vitabench observation of an openpi message; raises :class:`RequestError` naming what is wrong."""
        prompt = message.get("prompt", "")
        if not isinstance(prompt, str):
            raise RequestError(f"prompt is {_describe(prompt)}; accepted: a string")
        observation: dict[str, Any] = {"state": self.state(message.get("observation/state")), "instruction": prompt}
        if self.cameras:
            observation["images"] = {camera: self.image(message, camera) for camera in self.cameras}
        return observation

    def state(self, values: Any) -> dict[str, np.ndarray]:
        """The policy's state keys from openpi's 8-value ``observation/state`` (``None``: absent)."""
        from vitabench.geometry import axis_angle_to_quat

        unavailable = [key for key in self.state_keys if key not in (*OPENPI_STATE_KEYS, "ee_quat")]
        if unavailable:
            raise RequestError(
                f"the policy needs state key(s) {', '.join(unavailable)}, which openpi's LIBERO observation/state "
                f"does not carry; accepted: {', '.join((*OPENPI_STATE_KEYS, 'ee_quat'))} (or send a vitabench observation)"
            )
        if values is None:
            if self.state_keys:
                raise RequestError(f"the message lacks observation/state; the policy needs {', '.join(self.state_keys)}")
            return {}
        sizes = [STATE_SIZES[key] for key in OPENPI_STATE_KEYS]
        layout = f"{sum(sizes)} numbers ({' + '.join(f'{k} {n}' for k, n in zip(OPENPI_STATE_KEYS, sizes))})"
        try:
            flat = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise RequestError(f"observation/state is {_describe(values)}; accepted: {layout}") from None
        if flat.size != sum(sizes):
            raise RequestError(f"observation/state has {flat.size} values; accepted: {layout}")
        parts = dict(zip(OPENPI_STATE_KEYS, np.split(flat, np.cumsum(sizes)[:-1])))
        parts["ee_quat"] = axis_angle_to_quat(parts["ee_axis_angle"])
        return {key: parts[key].astype(np.float32) for key in self.state_keys}

    def image(self, message: Mapping[str, Any], camera: str) -> np.ndarray:
        """``camera``'s image from the message, turned and resized as the policy expects it."""
        from openpi_client import image_tools

        keys = {cam: key for key, cam in OPENPI_CAMERAS.items()}
        if camera not in keys:
            carried = ", ".join(f"{cam} ({key})" for key, cam in OPENPI_CAMERAS.items())
            raise RequestError(f"the policy needs camera {camera!r}, which openpi's LIBERO keys do not carry; accepted: {carried}")
        key = keys[camera]
        if key not in message:
            raise RequestError(f"the message lacks {key}; the policy needs camera {camera}")
        image = message[key]
        if not _is_rgb_image(image):
            raise RequestError(f"{key} is {_describe(image)}; accepted: a uint8 array [H, W, 3] of any H, W")
        if self.client_orientation != self.policy_orientation:
            image = image[::-1, ::-1]
        return image_tools.resize_with_pad(np.ascontiguousarray(image), self.resolution, self.resolution)


def served_protocol(policy: Policy, protocol: Protocol | None = None) -> Protocol:
    """The protocol whose observations openpi messages are converted to: ``protocol``, else the one
    the policy's checkpoint was trained under (its ``provenance``, which wrappers forward), else
    :data:`DEFAULT_PROTOCOL`. A checkpoint refuses a protocol that observes otherwise, as in
    ``vitabench run``."""
    from vitabench.api.protocol import check_trained_protocol, load_protocol, trained_protocol_fields

    trained = policy_provenance(policy).trained_protocol
    if protocol is None:
        known = trained_protocol_fields(trained) if trained else None
        protocol = known or load_protocol(str(trained["name"]) if trained else DEFAULT_PROTOCOL)
    check_trained_protocol(trained, protocol)
    return protocol


def is_openpi_message(message: Mapping[str, Any]) -> bool:
    """Whether an ``infer`` message uses openpi's keys (``observation/...``, ``prompt``) rather than
    a vitabench observation's; a map with keys of both is refused."""
    openpi = sorted(k for k in message if isinstance(k, str) and (k.startswith("observation/") or k == "prompt"))
    own = sorted(k for k in message if k in VITABENCH_OBSERVATION_KEYS)
    if openpi and own:
        raise RequestError(
            f"the message mixes openpi keys ({', '.join(openpi)}) with vitabench keys ({', '.join(own)}); "
            "accepted: one convention per message"
        )
    return bool(openpi)


def check_observation(obs: Any, spec: PolicySpec) -> Mapping[str, Any]:
    """Reject an observation that lacks what the served policy declared it needs."""
    if not isinstance(obs, Mapping):
        raise RequestError(f"an observation must be a map, got {type(obs).__name__}")
    images = obs.get("images", {})
    missing = [c for c in spec.cameras if not isinstance(images, Mapping) or c not in images]
    if missing:
        raise RequestError(f"observation lacks image(s) {', '.join(missing)}; the policy needs {', '.join(spec.cameras)}")
    for camera in spec.cameras:
        if not _is_rgb_image(images[camera]):
            raise RequestError(f"image {camera!r} is {_describe(images[camera])}; accepted: a uint8 array [H, W, 3]")
    state = obs.get("state", {})
    missing = [k for k in spec.state_keys if not isinstance(state, Mapping) or k not in state]
    if missing:
        raise RequestError(f"observation lacks state key(s) {', '.join(missing)}; the policy needs {', '.join(spec.state_keys)}")
    for key in spec.state_keys:
        if np.size(state[key]) != STATE_SIZES[key]:
            raise RequestError(f"state {key!r} has {np.size(state[key])} values; accepted: {STATE_SIZES[key]}")
    return obs


class PolicyServer:
    """Serves one policy to any number of websocket clients (see the module docstring)."""

    def __init__(
        self,
        policy: Policy,
        *,
        name: str,
        args: Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        protocol: Protocol | None = None,
        client_orientation: str = OPENPI_CLIENT_ORIENTATION,
    ) -> None:
        """``protocol`` and ``client_orientation`` set how openpi messages are converted (see
        :func:`served_protocol` and :class:`OpenpiConversion`)."""
        if max_message_bytes < 1:
            raise VitabenchError(f"max message bytes {max_message_bytes}: accepted: a positive integer")
        self.policy = policy
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.openpi = OpenpiConversion.for_policy(policy.spec, served_protocol(policy, protocol), client_orientation)
        self.metadata = {
            "server": "vitabench",
            "protocol": WIRE_PROTOCOL,
            "policy": name,
            "policy_args": dict(args or {}),
            "spec": spec_to_dict(policy.spec),
            "max_message_bytes": max_message_bytes,
            "openpi": dataclasses.asdict(self.openpi),
            "provenance": policy_provenance(policy).to_dict(),
        }
        self._policy_lock = threading.Lock()
        self._slot_ids = itertools.count()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Bind, call ``on_ready(url)``, serve until SIGINT/SIGTERM. A busy port raises."""
        asyncio.run(self._serve(on_ready))

    async def _serve(self, on_ready: Callable[[str], None] | None) -> None:
        from websockets.asyncio.server import serve

        try:
            server = await serve(
                self._handle,
                self.host,
                self.port,
                compression=None,
                max_size=2 * self.max_message_bytes,
                process_request=_health_check,
            )
        except OSError as exc:
            raise VitabenchError(
                f"cannot serve on {self.host}:{self.port}: {exc.strerror or exc}; choose another --port or --host"
            ) from exc
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        if on_ready is not None:
            on_ready(f"ws://{self.host}:{port}")
        async with server:
            await stop

    async def _handle(self, connection: Any) -> None:
        from openpi_client import msgpack_numpy
        from websockets.exceptions import ConnectionClosed

        packer = msgpack_numpy.Packer()
        client = _ClientState(self._slot_ids)
        try:
            await connection.send(packer.pack(self.metadata))
            async for message in connection:
                try:
                    reply = await asyncio.to_thread(self._answer, message, client)
                    await connection.send(packer.pack(reply))
                except (VitabenchError, ValueError) as exc:
                    await connection.send(f"error: {exc}")
                except Exception as exc:  # the policy failed on this request; others go on
                    await connection.send(f"error: the policy raised {type(exc).__name__}: {exc}")
        except ConnectionClosed:
            pass
        finally:
            await asyncio.to_thread(self._release, client)

    def _release(self, client: _ClientState) -> None:
        """Forget the policy state of a closed connection's slots (their episodes cannot continue)."""
        with self._policy_lock:
            for slot in client.server_slots():
                release_slot(self.policy, slot)

    def _answer(self, message: str | bytes, client: _ClientState) -> dict[str, Any]:
        from openpi_client import msgpack_numpy

        if isinstance(message, str):
            raise RequestError("text message; accepted: binary msgpack maps (openpi_client.msgpack_numpy)")
        if len(message) > self.max_message_bytes:
            raise RequestError(
                f"message of {len(message)} bytes exceeds the server limit of {self.max_message_bytes} bytes"
            )
        try:
            request = msgpack_numpy.unpackb(message)
        except Exception as exc:
            raise RequestError(f"malformed message, not msgpack: {type(exc).__name__}: {exc}") from exc
        if not isinstance(request, dict):
            raise RequestError(f"malformed message: a msgpack {type(request).__name__}; accepted: a map")
        if RESET_KEY in request:
            return self._reset(request[RESET_KEY], client)
        if ACT_KEY in request:
            return self._act(request[ACT_KEY], client)
        if CONTROL_KEY in request:
            return self._control(request, client)
        return self._infer(request, client)

    def _reset(self, body: Any, client: _ClientState) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("task"), dict):
            raise RequestError(f"{RESET_KEY} needs {{'task': {{...}}, 'slot': int, 'seed': int | None}}")
        task = task_from_dict(body["task"])
        seed = body.get("seed")
        with self._policy_lock:
            self.policy.reset(task, slot=client.slot(body.get("slot", 0)), seed=None if seed is None else int(seed))
        return {"ok": True}

    def _act(self, body: Any, client: _ClientState) -> dict[str, Any]:
        observations = body.get("observations") if isinstance(body, dict) else None
        if not isinstance(observations, list) or not observations:
            raise RequestError(f"{ACT_KEY} needs {{'observations': [obs, ...], 'slots': [int, ...]}}")
        slots = body.get("slots")
        slots = list(range(len(observations))) if slots is None else list(slots)
        if len(slots) != len(observations):
            raise RequestError(f"{ACT_KEY} has {len(observations)} observations but {len(slots)} slots")
        checked = [check_observation(o, self.policy.spec) for o in observations]
        server_slots = [client.slot(s) for s in slots]
        with self._policy_lock:
            actions = self.policy.act(checked, server_slots)
        return {"actions": check_actions(actions, len(checked))}

    def _control(self, request: dict[str, Any], client: _ClientState) -> dict[str, Any]:
        """openpi's episode messages: ``episode_start`` resets the client's slot 0 for ``__task__``."""
        command = request[CONTROL_KEY]
        if command == "episode_start":
            instruction = request.get("__task__", "")
            if not isinstance(instruction, str):
                raise RequestError(f"__task__ is {_describe(instruction)}; accepted: a string (the instruction)")
            with self._policy_lock:
                self._begin_episode(client, instruction)
            return {"__ack__": "episode_start"}
        return {"__ack__": "episode_end" if command == "episode_end" else "ignored"}

    def _infer(self, message: dict[str, Any], client: _ClientState) -> dict[str, Any]:
        observation = self.openpi.observation(message) if is_openpi_message(message) else message
        observation = check_observation(observation, self.policy.spec)
        instruction = str(observation.get("instruction", ""))
        slot = client.slot(0)
        with self._policy_lock:
            if client.instruction != instruction:
                self._begin_episode(client, instruction)
            actions = self.policy.act([observation], [slot])
        return {"actions": check_actions(actions, 1)[0]}

    def _begin_episode(self, client: _ClientState, instruction: str) -> None:
        """Reset the client's slot 0 for ``instruction`` (the caller holds the policy lock)."""
        task = Task(suite="openpi", task_id=0, name=instruction, instruction=instruction, n_init_states=0)
        self.policy.reset(task, slot=client.slot(0), seed=None)
        client.instruction = instruction


class _ClientState:
    """One connection's view: its slot numbers mapped to server-wide slots."""

    def __init__(self, slot_ids: itertools.count) -> None:
        self._slot_ids = slot_ids
        self._slots: dict[int, int] = {}
        self.instruction: str | None = None

    def slot(self, client_slot: Any) -> int:
        if isinstance(client_slot, bool) or not isinstance(client_slot, int) or client_slot < 0:
            raise RequestError(f"slot {client_slot!r}: accepted: an integer >= 0")
        if client_slot not in self._slots:
            self._slots[client_slot] = next(self._slot_ids)
        return self._slots[client_slot]

    def server_slots(self) -> list[int]:
        """The server-wide slots this connection has used."""
        return list(self._slots.values())


def _health_check(connection: Any, request: Any) -> Any:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None
