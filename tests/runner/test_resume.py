"""Resuming a run from its record alone: the arguments ``run.json`` keeps, the robot included."""

from __future__ import annotations

from pathlib import Path

from cli_in_process import vitabench_in_process
from report_runs import first_k, write_run

from vitabench.runner.resume import stored_arguments


def robot_run(tmp_path: Path) -> Path:
    """A recorded real_five run on a franka (the records only; resuming it never reaches the arm)."""
    return write_run(tmp_path / "run", "zero", "real_five", first_k(0), protocol="real_robot", tasks=(0,),
                     episodes_per_task=2, robot="franka")


def test_stored_arguments_carry_the_robot(tmp_path: Path) -> None:
    stored = stored_arguments(robot_run(tmp_path))
    assert (stored["robot"], stored["robot_args"]) == ("franka", {})
    assert (stored["suite"], stored["tasks"], stored["episodes_per_task"]) == ("real_five", [0], 2)


def test_resume_of_a_robot_run_takes_the_robot_from_its_record(tmp_path: Path) -> None:
    """``--resume --out DIR`` needs no ``--robot``: the run is checked as a franka run (here refused
    for its two workers, which a robot run cannot have, rather than for a missing --robot)."""
    run = robot_run(tmp_path)
    before = (run / "episodes.jsonl").read_bytes()
    result = vitabench_in_process("run", "--resume", "--out", str(run), "--workers", "2")
    assert result.returncode == 2 and "--workers 2: a robot run uses one worker" in " ".join(result.stderr.split()), result.stderr
    other = vitabench_in_process("run", "--resume", "--out", str(run), "--robot", "piper")
    assert other.returncode == 2 and "holds a run on robot franka, not piper" in " ".join(other.stderr.split()), other.stderr
    assert (run / "episodes.jsonl").read_bytes() == before
