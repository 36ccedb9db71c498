"""Serve any vitabench policy over a websocket, in the openpi convention.

Wire format (msgpack with numpy arrays, ``openpi_client.msgpack_numpy``):

* on connect the server sends a metadata dict: ``{"server": "vitabench", "protocol": 1,
  "policy": name, "policy_args": {...}, "spec": {PolicySpec fields}, "max_message_bytes": N}``;
* every request is one binary msgpack map, answered by one binary msgpack map:

  - ``{"vitabench/reset": {"task": {Task fields}, "slot": int, "seed": int | None}}`` resets the
    client's ``slot`` and answers ``{"ok": True}``;
  - ``{"vitabench/act": {"observations": [obs, ...], "slots": [int, ...]}}`` is one batched ``act``
    and answers ``{"actions": float32[B, chunk, 7]}``;
  - anything else is a plain openpi ``infer(obs)`` for the client's slot 0 and answers
    ``{"actions": float32[chunk, 7]}``. ``obs`` is either a vitabench observation (it has
    ``"images"``) or uses openpi's LIBERO keys (``observation/image``, ``observation/wrist_image``,
    ``observation/state``, ``prompt``, see :func:`from_openpi_observation`). The slot is reset
    implicitly on its first request and whenever the instruction changes.

* an error is answered with ONE text frame ``"error: <what is wrong>"`` (openpi clients raise on
  a text reply); the connection stays open and the server keeps serving every client. A message
  above ``max_message_bytes`` gets such an error; one above twice that is refused by the websocket
  layer itself (close code 1009), so the server never buffers more than that.

Slots are per connection: two clients may both use slot 0, the server maps each
``(connection, slot)`` to its own slot of the policy. Calls into the policy are serialised.
``GET /healthz`` answers 200 like openpi's server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import itertools
import signal
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Policy, PolicySpec, check_actions
from vitabench.api.suite import Task

RESET_KEY = "vitabench/reset"
ACT_KEY = "vitabench/act"
WIRE_PROTOCOL = 1
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Size of each state key (LIBERO), used to split openpi's flat ``observation/state``.
STATE_DIMS: dict[str, int] = {"ee_pos": 3, "ee_axis_angle": 3, "ee_quat": 4, "gripper_qpos": 2, "joint_pos": 7}

#: openpi LIBERO image key -> vitabench camera.
OPENPI_CAMERAS: dict[str, str] = {
    "observation/image": "agentview",
    "observation/wrist_image": "robot0_eye_in_hand",
}


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
    """openpi's flat state: the ``keys`` of a vitabench state concatenated (LIBERO: 8 values)."""
    return np.concatenate([np.asarray(state[k], dtype=np.float32).reshape(-1) for k in keys])


def from_openpi_observation(obs: Mapping[str, Any], spec: PolicySpec) -> dict[str, Any]:
    """A vitabench observation from openpi's LIBERO keys: images by :data:`OPENPI_CAMERAS`,
    ``observation/state`` split into ``spec.state_keys`` (sizes :data:`STATE_DIMS`), ``prompt``."""
    images = {camera: np.asarray(obs[key]) for key, camera in OPENPI_CAMERAS.items() if key in obs}
    state: dict[str, np.ndarray] = {}
    if "observation/state" in obs:
        flat = np.asarray(obs["observation/state"], dtype=np.float32).reshape(-1)
        sizes = [STATE_DIMS[k] for k in spec.state_keys]
        if flat.size != sum(sizes):
            raise RequestError(
                f"observation/state has {flat.size} values; accepted: {sum(sizes)} "
                f"({' + '.join(spec.state_keys)})"
            )
        for key, part in zip(spec.state_keys, np.split(flat, np.cumsum(sizes)[:-1])):
            state[key] = part
    return {"images": images, "state": state, "instruction": str(obs.get("prompt", ""))}


def check_observation(obs: Any, spec: PolicySpec) -> Mapping[str, Any]:
    """Reject an observation that lacks what the served policy declared it needs."""
    if not isinstance(obs, Mapping):
        raise RequestError(f"an observation must be a map, got {type(obs).__name__}")
    images = obs.get("images", {})
    missing = [c for c in spec.cameras if not isinstance(images, Mapping) or c not in images]
    if missing:
        raise RequestError(f"observation lacks image(s) {', '.join(missing)}; the policy needs {', '.join(spec.cameras)}")
    for camera in spec.cameras:
        image = images[camera]
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype != np.uint8:
            raise RequestError(f"image {camera!r} must be a uint8 array [H, W, 3]")
    state = obs.get("state", {})
    missing = [k for k in spec.state_keys if not isinstance(state, Mapping) or k not in state]
    if missing:
        raise RequestError(f"observation lacks state key(s) {', '.join(missing)}; the policy needs {', '.join(spec.state_keys)}")
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
    ) -> None:
        if max_message_bytes < 1:
            raise VitabenchError(f"max message bytes {max_message_bytes}: accepted: a positive integer")
        self.policy = policy
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.metadata = {
            "server": "vitabench",
            "protocol": WIRE_PROTOCOL,
            "policy": name,
            "policy_args": dict(args or {}),
            "spec": spec_to_dict(policy.spec),
            "max_message_bytes": max_message_bytes,
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

    def _infer(self, obs: dict[str, Any], client: _ClientState) -> dict[str, Any]:
        observation = obs if "images" in obs else from_openpi_observation(obs, self.policy.spec)
        observation = check_observation(observation, self.policy.spec)
        instruction = str(observation.get("instruction", ""))
        slot = client.slot(0)
        with self._policy_lock:
            if client.instruction != instruction:
                task = Task(suite="openpi", task_id=0, name=instruction, instruction=instruction, n_init_states=0)
                self.policy.reset(task, slot=slot, seed=None)
                client.instruction = instruction
            actions = self.policy.act([observation], [slot])
        return {"actions": check_actions(actions, 1)[0]}


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


def _health_check(connection: Any, request: Any) -> Any:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None
