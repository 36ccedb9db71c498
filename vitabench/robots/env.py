"""The robot adapter: a real-robot task as a Gymnasium environment over a robot driver.

``RobotEnv(task, protocol, cameras=..., robot="franka", robot_args={...})`` is what the runner
builds for a real-robot suite (``vitabench run --suite real_five --robot franka --robot-arg
host=...``, one worker). Each episode:

1. ``reset``: the operator resets the scene as the task says and confirms; nothing moves before
   that. Then the arm moves to its home pose and the first observation is read.
2. ``step(action)``: the action (LIBERO's space: delta end-effector pose + gripper in [-1, 1], or
   joint targets with ``action_mode=joint``) passes the safety checks and goes out at the task's
   control rate (the loop sleeps to the next tick; late ticks are counted as overruns).
3. The episode ends at the step limit (the smaller of the task's ``max_steps`` and the protocol's
   limit for the suite, so ``--max-steps`` can shorten but never lengthen a task; the runner passes
   it, :func:`~vitabench.api.suite.step_limit`), when the
   operator says done, or at an e-stop; the operator then labels it. The last step's ``info``
   carries ``success`` and the ``extra.*`` fields the runner copies into the record's ``extra``.

Environment arguments in ``robot_args`` (the rest go to the driver):
``operator`` (``stdin``), ``camera.NAME`` (a camera spec, see :mod:`vitabench.robots.cameras`),
``action_mode`` (``ee_delta`` | ``joint``), ``max_linear_speed`` (m/s per action unit, 0.1),
``max_angular_speed`` (rad/s per action unit, 0.5), ``workspace_min`` / ``workspace_max`` (m),
``speed_limit`` (m/s), ``max_joint_step`` (rad), ``move_home`` (true), ``record`` (true).
"""

from __future__ import annotations

import json
import statistics
import string
import threading
import time
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM, STATE_KEYS, STATE_SIZES
from vitabench.api.protocol import Protocol
from vitabench.api.suite import REAL_ROBOT_STEPS_KEY, Task, step_limit
from vitabench.robots.cameras import Camera, open_camera
from vitabench.geometry import quat_to_axis_angle
from vitabench.robots.driver import RobotDriver, RobotState, make_driver
from vitabench.robots.operator import EpisodeInvalid, Label, Operator
from vitabench.robots.recording import EpisodeRecording, recording_path
from vitabench.robots.safety import SafetyEvent, SafetyLimits, check_action, check_state_finite, limit_joint_targets, limit_twist

ENV_ARGS = (
    "operator",
    "action_mode",
    "max_linear_speed",
    "max_angular_speed",
    "workspace_min",
    "workspace_max",
    "speed_limit",
    "max_joint_step",
    "move_home",
    "record",
)
ACTION_MODES = ("ee_delta", "joint")
HOLD_CHECK_S = 0.3  # how long the hold after an e-stop is watched
SHOWN_EVENTS = 5  # safety events spelled out in a record (all are counted)


def _vector(name: str, value: Any) -> tuple[float, float, float]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        vector = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        vector = ()
    if len(vector) != 3:
        raise VitabenchError(f"--robot-arg {name}={value!r}; accepted: three numbers, e.g. 0.3,-0.3,0.05")
    return vector  # type: ignore[return-value]


class RobotEnv(gym.Env):
    """A real-robot task under a protocol: ``Box(-1, 1, (7,))`` actions, LIBERO-shaped observations."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: Task,
        protocol: Protocol,
        *,
        cameras: tuple[str, ...] = (),
        resolution: int | None = None,
        state_keys: tuple[str, ...] = STATE_KEYS,
        privileged: bool = False,
        max_steps: int | None = None,
        robot: str | None = None,
        robot_args: Mapping[str, Any] | None = None,
        run_dir: str | None = None,
        driver: RobotDriver | None = None,
        operator: Operator | None = None,
    ) -> None:
        if privileged:
            raise VitabenchError("a real robot has no privileged state; accepted: a policy with privileged=False")
        bad_keys = sorted(set(state_keys) - set(STATE_KEYS))
        if bad_keys:
            raise VitabenchError(f"unknown state key(s) {', '.join(bad_keys)}; accepted: {', '.join(STATE_KEYS)}")
        args = dict(robot_args or {})
        camera_specs = {k.removeprefix("camera."): str(args.pop(k)) for k in list(args) if k.startswith("camera.")}
        env_args = {k: args.pop(k) for k in list(args) if k in ENV_ARGS}
        missing = sorted(set(cameras) - set(camera_specs))
        if missing:
            raise VitabenchError(
                f"the policy asks for camera(s) {', '.join(missing)} but the robot has none by that name; "
                f"accepted: --robot-arg camera.{missing[0]}=opencv:INDEX|realsense:SERIAL|render:agentview|render:wrist"
            )
        if driver is None:
            if robot is None:
                raise VitabenchError(f"suite {task.suite!r} runs on a real robot; accepted: --robot franka|piper with --robot-arg KEY=VALUE")
            driver = make_driver(robot, args)
        self.driver = driver
        self.task = task
        self.protocol = protocol
        self.cameras = tuple(cameras)
        self.resolution = resolution or protocol.resolution
        self.state_keys = tuple(state_keys)
        self.control_hz = float(task.source.get("control_hz", protocol.control_freq))
        self.max_steps = max_steps or step_limit(protocol, task, REAL_ROBOT_STEPS_KEY)
        self.action_mode = str(env_args.get("action_mode", "ee_delta"))
        if self.action_mode not in ACTION_MODES:
            raise VitabenchError(f"--robot-arg action_mode={self.action_mode!r}; accepted: {', '.join(ACTION_MODES)}")
        if self.action_mode == "joint" and driver.dof + 1 != ACTION_DIM:
            raise VitabenchError(
                f"action_mode=joint needs {ACTION_DIM - 1} joints + gripper in a {ACTION_DIM}-value action; "
                f"robot {driver.name!r} has {driver.dof} joints; accepted: action_mode=ee_delta"
            )
        self.linear_scale = float(env_args.get("max_linear_speed", 0.1))
        self.angular_scale = float(env_args.get("max_angular_speed", 0.5))
        defaults = SafetyLimits()
        self.limits = SafetyLimits(
            workspace_min=_vector("workspace_min", env_args.get("workspace_min", defaults.workspace_min)),
            workspace_max=_vector("workspace_max", env_args.get("workspace_max", defaults.workspace_max)),
            max_linear_speed=float(env_args.get("speed_limit", defaults.max_linear_speed)),
            max_angular_speed=max(defaults.max_angular_speed, self.angular_scale),
            max_joint_step=float(env_args.get("max_joint_step", defaults.max_joint_step)),
        )
        self.move_home = bool(env_args.get("move_home", True))
        self.run_dir = run_dir if env_args.get("record", True) else None
        self.robot_name = driver.name
        self.operator = operator or Operator(source=str(env_args.get("operator", "stdin")))
        self._cameras: dict[str, Camera] = {}
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.observation_space = self._observation_space()
        self._lock = threading.Lock()
        self._halted = False
        self._episode_open = False
        driver.connect()
        try:
            self._cameras = {name: open_camera(spec, self.resolution) for name, spec in camera_specs.items()}
        except Exception:
            driver.close()
            raise

    # -- spaces and observations ----------------------------------------------------------------
    def _observation_space(self) -> gym.spaces.Dict:
        shapes = {**STATE_SIZES, "joint_pos": self.driver.dof}
        spaces: dict[str, gym.Space] = {
            "state": gym.spaces.Dict({k: gym.spaces.Box(-np.inf, np.inf, (int(shapes[k]),), dtype=np.float32) for k in self.state_keys}),
            "instruction": gym.spaces.Text(max_length=1024, charset=string.printable),
        }
        if self.cameras:
            res = self.resolution
            spaces["images"] = gym.spaces.Dict({c: gym.spaces.Box(0, 255, (res, res, 3), dtype=np.uint8) for c in self.cameras})
        return gym.spaces.Dict(spaces)

    def _read(self) -> tuple[RobotState, dict[str, np.ndarray]]:
        """A state reading and a frame from every camera (all are recorded; the policy sees its own)."""
        state = self.driver.read_state()
        check_state_finite(state.is_finite(), self._steps)
        images = {name: camera.read(state.joint_pos) for name, camera in self._cameras.items()}
        return state, images

    def _observation(self, state: RobotState, images: Mapping[str, np.ndarray]) -> dict[str, Any]:
        from vitabench.envs.libero_env import orient

        half = state.gripper_width / 2
        full = {
            "ee_pos": state.ee_pos.astype(np.float32),
            "ee_axis_angle": quat_to_axis_angle(state.ee_quat).astype(np.float32),
            "ee_quat": state.ee_quat.astype(np.float32),
            "gripper_qpos": np.array([half, -half], dtype=np.float32),
            "joint_pos": state.joint_pos.astype(np.float32),
        }
        obs: dict[str, Any] = {"state": {k: full[k] for k in self.state_keys}, "instruction": self.task.instruction}
        if self.cameras:
            obs["images"] = {c: orient(images[c], self.protocol.image_orientation) for c in self.cameras}
        return obs

    # -- gymnasium api ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._steps = 0
        confirm_s = self.operator.confirm_reset(self.task.name, str(self.task.source.get("reset_instructions", "reset the scene")))
        self._halted = False
        if self.move_home:
            self.driver.move_home()
        state, images = self._read()
        self._state, self._images = state, images
        self._start_state = state
        self._gripper_closed: bool | None = None
        self._events: list[SafetyEvent] = []
        self._sent: list[float] = []
        self._command_s: list[float] = []
        self._read_s: list[float] = []
        self._overruns = 0
        self._next_tick: float | None = None
        self._t0 = time.monotonic()
        self._extra: dict[str, Any] = {"reset_confirm_s": round(confirm_s, 3)}
        self._recording = (
            EpisodeRecording(
                recording_path(self.run_dir, self.task.task_id, self.task.name),
                self.task.instruction,
                self.robot_name,
                {"task": self.task.name, "task_id": self.task.task_id, "seed": -1 if seed is None else seed, "control_hz": self.control_hz},
            )
            if self.run_dir
            else None
        )
        self._episode_open = True
        self.operator.arm(self._estop_now)
        return self._observation(state, images), {"steps": 0, "success": False}

    def _estop_now(self) -> None:
        """Runs on the operator's reader thread the moment the e-stop line arrives."""
        start = time.monotonic()
        with self._lock:
            self._halted = True
            self.driver.estop()
        self._extra["estop_stop_ms"] = round(1000 * (time.monotonic() - start), 1)

    def _halt(self) -> None:
        with self._lock:
            self._halted = True
            self.driver.estop()

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        if not self._episode_open:
            raise VitabenchError("step() called with no episode running; call reset() first")
        try:
            policy_action = check_action(action)
            if self.operator.estopped.is_set():
                return self._end("estop")
            executed = self._command(policy_action)
            started = time.monotonic()
            state, images = self._read()
            self._read_s.append(time.monotonic() - started)
        except Exception as exc:
            self._abort(exc)
            raise
        if self._recording is not None:
            self._recording.add(self._images, self._state, policy_action, executed, self._sent[-1] - self._t0)
        self._state, self._images = state, images
        self._steps += 1
        obs = self._observation(state, images)
        if self.operator.estopped.is_set():
            return self._end("estop", obs)
        if self.operator.done.is_set():
            return self._end("operator_done", obs)
        if self._steps >= self.max_steps:
            return self._end("max_steps", obs)
        return obs, 0.0, False, False, {"steps": self._steps, "success": False}

    def _command(self, action: np.ndarray) -> np.ndarray:
        """Wait for the next tick, apply the safety limits, send; the executed action (policy space)."""
        period = 1.0 / self.control_hz
        now = time.monotonic()
        if self._next_tick is None:
            self._next_tick = now
        wait = self._next_tick - now
        if wait > 0:
            time.sleep(wait)
        elif -wait > period / 2:
            self._overruns += 1
            self._next_tick = now
        self._next_tick += period
        started = time.monotonic()
        executed = action.copy()
        with self._lock:
            if self._halted:
                return np.zeros_like(action)
            if self.action_mode == "ee_delta":
                linear, angular, events = limit_twist(
                    self.limits, self._state.ee_pos, action[:3] * self.linear_scale, action[3:6] * self.angular_scale, period, self._steps
                )
                self.driver.send_ee_twist(linear, angular, period)
                executed[:3], executed[3:6] = linear / self.linear_scale, angular / self.angular_scale
            else:
                joint_min, joint_max = self.driver.joint_min, self.driver.joint_max
                target = joint_min + (action[:-1] + 1) / 2 * (joint_max - joint_min)
                target, events = limit_joint_targets(self.limits, self._state.joint_pos, target, joint_min, joint_max, self._steps)
                self.driver.send_joint_targets(target)
                executed[:-1] = 2 * (target - joint_min) / (joint_max - joint_min) - 1
            closed = bool(action[-1] > 0)
            if closed != self._gripper_closed:
                self.driver.send_gripper(closed)
                self._gripper_closed = closed
        self._events.extend(events)
        self._sent.append(time.monotonic())
        self._command_s.append(self._sent[-1] - started)
        return executed

    # -- the end of an episode ----------------------------------------------------------------------
    def _timing(self) -> dict[str, Any]:
        sent = self._sent
        timing: dict[str, Any] = {"control_hz": self.control_hz, "overruns": self._overruns}
        if len(sent) >= 2:
            periods = np.diff(sent)
            timing["achieved_hz"] = round((len(sent) - 1) / (sent[-1] - sent[0]), 3)
            timing["period_jitter_ms"] = round(1000 * float(np.std(periods)), 3)
            timing["period_max_ms"] = round(1000 * float(np.max(periods)), 3)
        if self._command_s:
            timing["command_ms_mean"] = round(1000 * statistics.fmean(self._command_s), 3)
            timing["command_ms_max"] = round(1000 * max(self._command_s), 3)
        if self._read_s:
            timing["state_ms_mean"] = round(1000 * statistics.fmean(self._read_s), 3)
        return timing

    def _hold_check(self) -> dict[str, Any]:
        """After an e-stop: how far the end effector drifts while holding, and how fast."""
        before = self.driver.read_state()
        time.sleep(HOLD_CHECK_S)
        after = self.driver.read_state()
        drift = float(np.linalg.norm(after.ee_pos - before.ee_pos))
        return {"estop_hold_drift_mm": round(1000 * drift, 3), "estop_hold_speed_mps": round(drift / (after.stamp - before.stamp), 5)}

    def _end(self, reason: str, obs: dict[str, Any] | None = None) -> tuple[dict, float, bool, bool, dict]:
        self.operator.disarm()
        self._episode_open = False
        if reason == "estop":
            self._extra.update({"estop": True, "estop_step": self._steps, **self._hold_check()})
        else:
            self._halt()
        if obs is None:
            obs = self._observation(self._state, self._images)
        label = self.operator.label(f"{self.task.name}: episode over ({reason}) after {self._steps} steps")
        end = self._state.ee_pos - self._start_state.ee_pos
        extra = {
            "robot": self.robot_name,
            "end_reason": reason,
            "label": label.outcome,
            "label_source": label.source,
            "label_answer_s": round(label.answer_s, 3),
            "safety_clips": len(self._events),
            "ee_dx_m": round(float(end[0]), 5),
            "ee_dy_m": round(float(end[1]), 5),
            "ee_dz_m": round(float(end[2]), 5),
            **self._timing(),
            **self._extra,
        }
        if self._events:
            extra["safety_events"] = "; ".join(str(e) for e in self._events[:SHOWN_EVENTS])
        if label.reason:
            extra["invalid_reason"] = label.reason
        extra["recording"] = self._save(label.outcome, extra, label)
        if label.outcome == "invalid":
            raise EpisodeInvalid(f"the operator marked the episode invalid: {label.reason} ({label.source}, {reason} after {self._steps} steps)")
        info = {"steps": self._steps, "success": label.outcome == "success", **{f"extra.{k}": v for k, v in extra.items() if v is not None}}
        truncated = reason == "max_steps"
        return obs, float(label.outcome == "success"), not truncated, truncated, info

    def _save(self, outcome: str, extra: Mapping[str, Any], label: Label | None) -> str | None:
        if self._recording is None:
            return None
        attrs = {"label_source": label.source if label else "none", "extra": json.dumps(dict(extra), default=str)}
        path, self._recording = self._recording.save(outcome, attrs), None
        return path

    def _abort(self, exc: Exception) -> None:
        """An unsafe action or a robot error: stop the arm, keep what was recorded, end the episode."""
        self.operator.disarm()
        self._episode_open = False
        try:
            self._halt()
        finally:
            self._save("error", {"error": f"{type(exc).__name__}: {exc}", "steps": self._steps}, None)

    def close(self) -> None:
        self.operator.disarm()
        for camera in self._cameras.values():
            camera.close()
        self._cameras = {}
        if self.driver is not None:
            self.driver.close()
