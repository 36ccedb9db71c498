"""``remote``: a policy served over a websocket in the openpi convention.

``--policy remote --policy-arg url=ws://HOST:PORT`` talks, through ``openpi_client``, to

* a ``vitabench serve`` server (its metadata says ``"server": "vitabench"``): the spec and the
  provenance (checkpoint, trained protocol) come from the server; ``reset`` is forwarded per slot and one ``act`` over several slots is ONE batched
  request (see :mod:`vitabench.serving`);
* any other openpi-style server (π0, π0.5, OpenVLA-OFT, ...): each observation is mapped to openpi's
  LIBERO keys, ``observation/image`` (agentview) and ``observation/wrist_image`` (wrist camera),
  both resized with padding to ``resize`` px (224, 0 = as rendered) exactly as openpi's LIBERO
  example does, ``observation/state`` (``ee_pos``, ``ee_axis_angle``, ``gripper_qpos``: 8 float64
  values, as openpi's client sends) and ``prompt`` (the instruction); images go as the protocol
  renders them (the ``standard`` protocol's 180° rotation is openpi's). Its ``reset`` sends
  nothing (openpi has no reset); a batch is one request per slot, in order; the first 7 dims of
  each returned chunk are used.

Every action of a returned chunk is executed unless ``replan_steps=K`` (openpi's LIBERO loop: 5)
keeps only the first ``K``, as openpi's loop does; a shorter chunk is then an error.

Failures raise :class:`VitabenchError` naming the server and the cause: unreachable (bounded by
``connect_timeout``), no reply within ``timeout`` seconds, the connection closed, or an error frame.
After a failure the next ``reset`` reconnects, so a restarted server serves the next episodes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM, BasePolicy, Observation, PolicySpec, Provenance, batch_slots, check_actions
from vitabench.api.suite import Task
from vitabench.serving import (
    ACT_KEY,
    OPENPI_CAMERAS,
    OPENPI_STATE_KEYS,
    RESET_KEY,
    openpi_state,
    spec_from_dict,
    task_to_dict,
)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "(empty)"


def _client_class() -> type:
    import websockets.sync.client
    from openpi_client import msgpack_numpy
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    class BoundedClient(WebsocketClientPolicy):
        """openpi's client with bounded connect and reply times."""

        def __init__(self, url: str, connect_timeout: float, timeout: float, api_key: str | None) -> None:
            self._connect_timeout = connect_timeout
            self._timeout = timeout
            super().__init__(host=url, api_key=api_key)

        def _wait_for_server(self) -> tuple[Any, dict]:
            headers = {"Authorization": f"Api-Key {self._api_key}"} if self._api_key else None
            conn = websockets.sync.client.connect(
                self._uri,
                compression=None,
                max_size=None,
                proxy=None,
                legacy=True,  # a plain connection, as openpi's client keeps one
                open_timeout=self._connect_timeout,
                additional_headers=headers,
            )
            return conn, msgpack_numpy.unpackb(conn.recv(timeout=self._connect_timeout))

        def infer(self, obs: dict) -> dict:
            self._ws.send(self._packer.pack(obs))
            response = self._ws.recv(timeout=self._timeout)
            if isinstance(response, str):
                raise ServerError(_one_line(response))
            return msgpack_numpy.unpackb(response)

        def close(self) -> None:
            self._ws.close()

    return BoundedClient


class ServerError(VitabenchError):
    """The server answered a request with an error frame."""


class RemotePolicy(BasePolicy):
    """A policy behind ``url`` (``ws://HOST:PORT``); see the module docstring."""

    def __init__(
        self,
        url: str,
        connect_timeout: float = 10.0,
        timeout: float = 120.0,
        resize: int = 224,
        chunk: int = 1,
        api_key: str | None = None,
        replan_steps: int | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise VitabenchError(f"remote url={url!r}: accepted: ws://HOST:PORT or wss://HOST:PORT")
        if replan_steps is not None and (isinstance(replan_steps, bool) or not isinstance(replan_steps, int) or replan_steps < 1):
            raise VitabenchError(f"remote replan_steps={replan_steps!r}: accepted: a positive integer (actions run per chunk)")
        self.replan_steps = replan_steps
        self.url = url
        self.connect_timeout = float(connect_timeout)
        self.timeout = float(timeout)
        self.resize = int(resize)
        self.api_key = api_key
        self._client: Any = None
        self.metadata = self._connect()
        self.is_vitabench = self.metadata.get("server") == "vitabench"
        if self.is_vitabench:
            self.spec = spec_from_dict(self.metadata["spec"])
            self.provenance = Provenance.from_dict(self.metadata.get("provenance") or {})
        else:
            self.spec = PolicySpec(cameras=tuple(OPENPI_CAMERAS.values()), state_keys=OPENPI_STATE_KEYS, chunk=int(chunk))
        if replan_steps is not None:
            self.spec = dataclasses.replace(self.spec, chunk=replan_steps)

    def _connect(self) -> dict[str, Any]:
        try:
            self._client = _client_class()(self.url, self.connect_timeout, self.timeout, self.api_key)
        except Exception as exc:
            self._client = None
            raise VitabenchError(f"cannot reach policy server {self.url}: {_describe(exc)}") from exc
        metadata = self._client.get_server_metadata()
        if not isinstance(metadata, dict):
            raise VitabenchError(f"policy server {self.url} sent metadata of type {type(metadata).__name__}; expected a map")
        return metadata

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            raise VitabenchError(f"no connection to policy server {self.url} (lost earlier; the next reset reconnects)")
        try:
            reply = self._client.infer(message)
        except ServerError as exc:
            raise ServerError(f"policy server {self.url} answered with an error: {exc}") from exc
        except (TypeError, ValueError) as exc:  # msgpack could not pack the message; nothing was sent
            raise VitabenchError(f"cannot send this observation to {self.url}: {exc}") from exc
        except Exception as exc:
            self.close()
            raise VitabenchError(f"policy server {self.url} failed: {_describe(exc)}") from exc
        if not isinstance(reply, dict):
            raise VitabenchError(f"policy server {self.url} replied with a {type(reply).__name__}; expected a map")
        return reply

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        if self._client is None:
            self._connect()
        if self.is_vitabench:
            self._request({RESET_KEY: {"task": task_to_dict(task), "slot": slot, "seed": seed}})

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        slot_ids = batch_slots(observations, slots)
        if self.is_vitabench:
            reply = self._request({ACT_KEY: {"observations": [dict(o) for o in observations], "slots": slot_ids}})
            return self._actions(reply, len(observations))
        chunks = [self._actions(self._request(self._to_openpi(o)), 1)[0] for o in observations]
        length = min(len(c) for c in chunks)
        return np.stack([c[:length] for c in chunks])

    def _actions(self, reply: Mapping[str, Any], batch: int) -> np.ndarray:
        if "actions" not in reply:
            raise VitabenchError(f"policy server {self.url} replied without 'actions' (keys: {', '.join(map(str, reply))})")
        actions = np.asarray(reply["actions"], dtype=np.float32)
        if not self.is_vitabench:
            actions = actions.reshape(-1, actions.shape[-1])[None, :, :ACTION_DIM]
        try:
            actions = check_actions(actions, batch)
        except ValueError as exc:
            raise VitabenchError(f"policy server {self.url}: {exc}") from exc
        if self.replan_steps is None:
            return actions
        if actions.shape[1] < self.replan_steps:
            raise VitabenchError(
                f"policy server {self.url} returned a chunk of {actions.shape[1]} actions; "
                f"replan_steps={self.replan_steps} needs at least {self.replan_steps}"
            )
        return actions[:, : self.replan_steps]

    def _to_openpi(self, observation: Observation) -> dict[str, Any]:
        from openpi_client import image_tools

        images = observation["images"]
        element: dict[str, Any] = {
            "observation/state": openpi_state(observation["state"], OPENPI_STATE_KEYS),
            "prompt": str(observation.get("instruction", "")),
        }
        for key, camera in OPENPI_CAMERAS.items():
            image = np.ascontiguousarray(images[camera])
            if self.resize > 0:
                image = image_tools.convert_to_uint8(image_tools.resize_with_pad(image, self.resize, self.resize))
            element[key] = image
        return element

    def close(self) -> None:
        """Close the connection (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def _describe(exc: BaseException) -> str:
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed):
        return f"the connection closed ({exc})"
    if isinstance(exc, TimeoutError):
        return f"no answer within the time limit ({exc or 'timed out'})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    return f"{type(exc).__name__}: {_one_line(str(exc))}"
