"""``vitabench run --suite real_five --robot franka`` end to end against franky-sim, the operator on stdin.

Three episodes of a replayed action script (``+x``, then ``+z`` into the workspace ceiling):
the first is labelled a success, the second is e-stopped while moving and labelled a failure, the
third is marked invalid. The records, the recordings and ``vitabench report`` are checked.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_in_process import vitabench_in_process

VITABENCH = [sys.executable, "-m", "vitabench"]
STEPS = 24
Z_CEILING = 0.49  # a little above the home pose's 0.487 m


def action_script(path: Path) -> Path:
    actions = np.zeros((STEPS, 7), dtype=np.float32)
    actions[:, -1] = -1.0  # gripper open
    actions[: STEPS // 2, 0] = 1.0  # +x at 0.1 m/s
    actions[STEPS // 2 :, 2] = 1.0  # +z, into the ceiling
    with h5py.File(path, "w") as f:
        f.create_dataset("data/demo_0/actions", data=actions)
    return path


class Session:
    """A ``vitabench run`` process whose stderr prompts are read on a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            self.lines.put(line)

    def wait_for(self, tag: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                assert self.process.poll() is None, "vitabench run ended early:\n" + "\n".join(self.log[-20:])
                continue
            if line.startswith(f"[operator] {tag}"):
                return line
        raise AssertionError(f"no [operator] {tag} prompt within {timeout:g} s:\n" + "\n".join(self.log[-20:]))

    def answer(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()


@pytest.mark.sim
def test_real_five_run_with_operator_estop_clip_and_report(sim_host, tmp_path):
    run_dir = tmp_path / "run"
    session = Session(
        [
            *VITABENCH, "run", "--policy", "replay", "--policy-arg", f"path={action_script(tmp_path / 'script.hdf5')}",
            "--policy-arg", "chunk=4", "--suite", "real_five", "--tasks", "0", "--episodes-per-task", "3",
            "--max-steps", str(STEPS), "--robot", "franka", "--robot-arg", f"host={sim_host}", "--robot-arg", "dynamics=0.5",
            "--robot-arg", "camera.agentview=render:agentview", "--robot-arg", f"workspace_max=0.8,0.4,{Z_CEILING}",
            "--out", str(run_dir), "--quiet",
        ]
    )
    try:
        session.wait_for("RESET")
        session.answer("y")
        session.wait_for("LABEL")
        session.answer("s")
        session.wait_for("RESET")
        session.answer("y")
        session.wait_for("RUNNING")
        time.sleep(0.4)  # a few steps into the +x motion
        session.answer("e")
        session.wait_for("LABEL")
        session.answer("f")
        session.wait_for("RESET")
        session.answer("y")
        session.wait_for("LABEL")
        session.answer("i cup fell over")
        assert session.process.wait(120) == 3, "\n".join(session.log[-20:])  # 3: an episode is an error (invalid)
    finally:
        if session.process.poll() is None:
            session.process.kill()

    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    first, stopped, invalid = records
    extra = first["extra"]
    assert first["success"] is True and first["steps"] == STEPS and extra["end_reason"] == "max_steps"
    assert (extra["label"], extra["label_source"]) == ("success", "operator:stdin")
    assert extra["ee_dx_m"] > 0.003 and abs(extra["ee_dy_m"]) < 0.3 * extra["ee_dx_m"]  # moved +x as commanded
    assert extra["safety_clips"] > 0 and "workspace z" in extra["safety_events"]  # the +z half hit the ceiling
    assert extra["ee_dz_m"] < Z_CEILING - 0.48  # and stayed under it
    assert extra["control_hz"] == 20 and extra["achieved_hz"] <= 21  # the loop never outruns its rate
    assert extra["achieved_hz"] > 15 or extra["overruns"] > 0  # and a slower loop says so
    assert stopped["success"] is False and stopped["extra"]["estop"] is True and stopped["extra"]["end_reason"] == "estop"
    assert stopped["steps"] < STEPS and stopped["extra"]["estop_hold_drift_mm"] < 1.0
    assert invalid["success"] is None and "invalid: cup fell over (operator:stdin" in invalid["error"]
    assert json.loads((run_dir / "run.json").read_text())["robot"] == {"name": "franka", "args": {
        "camera.agentview": "render:agentview", "dynamics": 0.5, "host": sim_host, "workspace_max": f"0.8,0.4,{Z_CEILING}"}}

    with h5py.File(run_dir / "recordings" / "t000_close_drawer.hdf5") as f:
        demos = {k: f["data"][k].attrs["outcome"] for k in f["data"]}
        assert demos == {"demo_0": "success", "demo_1": "failure", "demo_2": "invalid"}
        assert f["data/demo_0/obs/agentview_rgb"].shape[0] == STEPS and f["data/demo_0/obs/joint_states"].shape == (STEPS, 7)

    report = vitabench_in_process("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    assert "real_five" in report.stdout and "close_drawer" in report.stdout


@pytest.mark.parametrize(
    "args, message, in_subprocess",
    [
        # one case in a real `python -m vitabench` process: exit 2 and the message as a shell sees them
        (["--suite", "real_five"], "suite 'real_five' runs on a real robot; accepted: --robot franka|piper", True),
        (["--suite", "real_five", "--robot", "ur5"], "unknown robot 'ur5'; accepted: franka, piper", False),
        (["--suite", "real_five", "--robot", "franka", "--workers", "2"], "--workers 2: a robot run uses one worker", False),
        (["--suite", "real_five", "--robot", "franka", "--robot-arg", "host"], "--robot-arg 'host'; accepted: KEY=VALUE", False),
        (["--suite", "libero_object", "--robot", "franka"], "--robot franka: suite 'libero_object' is simulated", False),
    ],
)
def test_bad_robot_runs_exit_2_before_anything_is_written(tmp_path, args, message, in_subprocess):
    argv = ["run", "--policy", "zero", *args, "--out", str(tmp_path / "run")]
    if in_subprocess:
        result = subprocess.run([*VITABENCH, *argv], capture_output=True, text=True, timeout=120)
    else:
        result = vitabench_in_process(*argv)
    assert result.returncode == 2 and message in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "run").exists()
