"""``vitabench run --executor ray`` end to end on real LIBERO steps, with real Ray instances.

Ray starts twice in this module (each start costs seconds):

* ``vitabench run --executor ray`` as a subprocess starting its own Ray instance, under its own
  ``RAY_TMPDIR`` so that the Ray processes it starts can be found (command line, environment or
  parentage) and, if any outlive the run, killed by pid in teardown; a leftover fails the test;
* one cluster started with ``ray start --head`` (module fixture, same bookkeeping) that the other
  runs join: the CLI with ``--ray-address auto`` (a fault-injecting suite: env exception, actor
  death, hang) and, in this process, the lazy-rendering probe run of ``test_lazy_rendering.py``;
  a run that only joined must leave the cluster running.

Runs are tiny: task 0, a few episodes of 5 steps (12 for the lazy-rendering probe), no cameras
but the probe's. Option errors are checked in this process, but for one CLI subprocess (exit
code 2, one ``error:`` line, nothing written).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from vitabench.runner import run_evaluation
from vitabench.runner.store import RunStore

pytestmark = pytest.mark.sim

BIN = Path(sys.executable).parent
RUN = ["run", "--policy", "random", "--suite", "libero_object", "--tasks", "0", "--quiet"]


def outcomes(run_dir: Path) -> dict[str, tuple[Any, ...]]:
    return {r.episode_id: (r.status, r.success, r.steps, r.extra.get("state_digest")) for r in RunStore(run_dir).records()}


def ray_processes(tmpdir: str) -> list[int]:
    """Live processes of the Ray instances under ``tmpdir``: those naming it in their command line
    or environment, and their descendants."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":
                continue
            text = (entry / "cmdline").read_bytes()
            try:
                text += (entry / "environ").read_bytes()
            except OSError:
                pass
        except OSError:
            continue
        table[int(entry.name)] = (int(stat[1]), text)
    found = {pid for pid, (_, text) in table.items() if tmpdir.encode() in text}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    found.discard(os.getpid())
    return sorted(found)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def ray_daemons(tmpdir: str) -> dict[int, str]:
    """The GCS server and raylet processes of the Ray cluster under ``tmpdir``: pid -> name."""
    daemons = {}
    for pid in ray_processes(tmpdir):
        try:
            name = os.path.basename((Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0].decode())
        except OSError:
            continue
        if name in ("gcs_server", "raylet"):
            daemons[pid] = name
    return daemons


@pytest.fixture
def ray_env() -> Iterator[dict[str, str]]:
    """Environment for a ``vitabench`` subprocess with a private ``RAY_TMPDIR`` (short: Ray puts
    unix sockets in it); teardown asserts no Ray process outlived the test."""
    tmpdir = tempfile.mkdtemp(prefix="vbray", dir="/tmp")
    try:
        yield {**os.environ, "MUJOCO_GL": "egl", "RAY_TMPDIR": tmpdir}
        deadline = time.monotonic() + 30
        while ray_processes(tmpdir) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftover = ray_processes(tmpdir)
    finally:
        kill_all(ray_processes(tmpdir))
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert not leftover, f"Ray processes outlived the run: {leftover}"


def vitabench(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "vitabench"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_ray_gives_the_records_of_local_workers(ray_env: dict[str, str], tmp_path: Path) -> None:
    local = run_evaluation("random", {}, "libero_object", tasks=[0], episodes_per_task=3, max_steps=5, workers=1, out=tmp_path / "local").run_dir
    out = tmp_path / "ray"
    done = vitabench([*RUN, "--executor", "ray", "--workers", "2", "--episodes-per-task", "3", "--max-steps", "5", "--out", str(out)], ray_env)
    assert done.returncode == 0, done.stderr
    assert outcomes(out) == outcomes(local)
    assert all(o[0] == "ok" and o[3] for o in outcomes(out).values())
    records = RunStore(out).records()
    assert len({r.worker["pid"] for r in records}) == 2  # two actors, neither of them the driver
    assert "--executor" in RunStore(out).config()["sessions"][0]["argv"]


#: A driver that starts its own Ray instance (as ``vitabench run --executor ray`` does) and two env
#: actors, prints ``ready`` and the actors' pids, then waits to be killed.
KILLED_DRIVER = """
import time
import ray
from vitabench.runner.ray_executor import RayExecutor, _actor_class
executor = RayExecutor(2)
executor.connect()
actors = [_actor_class().options(**executor.actor_options()).remote() for _ in range(2)]
print("ready", *[pid for pid, _ in ray.get([actor.where.remote() for actor in actors])], flush=True)
time.sleep(600)
"""


def test_ray_processes_die_within_seconds_of_a_sigkilled_driver(ray_env: dict[str, str]) -> None:
    """The reaper of the driver's private Ray instance kills its daemons and actor workers as soon
    as the driver is gone (Ray alone needs 30-90 s to notice)."""
    tmpdir = ray_env["RAY_TMPDIR"]
    driver = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER], env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = driver.stdout.readline().split()
        assert line[:1] == ["ready"], driver.stderr.read()
        actors = [int(pid) for pid in line[1:]]
        assert len(actors) == 2 and set(actors) <= set(ray_processes(tmpdir))
        assert sorted(ray_daemons(tmpdir).values()) == ["gcs_server", "raylet"]
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 5
        while ray_processes(tmpdir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray_processes(tmpdir) == []
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


#: ``vitabench`` knowing the fault-injecting suite of ``faults.py`` (the actors import it through PYTHONPATH,
#: which names this directory only: ``faults`` imports numpy and vitabench's api, no test helper).
FAULTY_CLI = [
    sys.executable,
    "-c",
    "from vitabench.plugins import SUITES; SUITES.register('faulty', 'faults:load_faulty_suite'); "
    "from vitabench.cli import main; main()",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Cluster:
    """A running ``ray start --head`` cluster: the environment that joins it and its daemons."""

    env: dict[str, str]
    daemons: dict[int, str]

    def stopped(self) -> list[int]:
        """Daemons of the cluster that are no longer running."""
        return sorted(set(self.daemons) - set(ray_daemons(self.env["RAY_TMPDIR"])))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One Ray cluster started with ``ray start`` (4 CPUs, for runs of 2 actors) under a private
    ``RAY_TMPDIR``, for the runs that join it; ``PYTHONPATH`` names this directory so that its
    actors import ``test_runner``'s faulty suite. Killed by pid at the end of the module."""
    tmpdir = tempfile.mkdtemp(prefix="vbcl", dir="/tmp")
    env = {**os.environ, "MUJOCO_GL": "egl", "RAY_TMPDIR": tmpdir, "PYTHONPATH": str(Path(__file__).parent)}
    try:
        started = subprocess.run(
            [str(BIN / "ray"), "start", "--head", "--port", str(free_port()), "--num-cpus", "4", "--include-dashboard", "false", "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert started.returncode == 0, started.stderr
        daemons = ray_daemons(tmpdir)
        assert sorted(daemons.values()) == ["gcs_server", "raylet"], daemons
        yield Cluster(env, daemons)
    finally:
        kill_all(ray_processes(tmpdir))
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_env_exception_actor_death_and_hang_are_episode_errors(cluster: Cluster, tmp_path: Path) -> None:
    """On a cluster joined with ``--ray-address auto``."""
    out = tmp_path / "run"
    args = ["run", "--policy", "zero", "--suite", "faulty", "--tasks", "0-3", "--episodes-per-task", "2", "--max-steps", "5"]
    done = subprocess.run(
        [*FAULTY_CLI, *args, "--executor", "ray", "--ray-address", "auto", "--workers", "2", "--step-timeout", "2", "--out", str(out), "--quiet"],
        env=cluster.env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 3, done.stderr  # finished, with errored episodes
    assert "3 episode(s) errored" in done.stderr and "overall" in done.stdout
    records = {r.episode_id: r for r in RunStore(out).records()}
    assert len(records) == 8
    errors = {e: r.error for e, r in records.items() if r.status == "error"}
    assert set(errors) == {"faulty/t001/e0001", "faulty/t002/e0000", "faulty/t003/e0001"}
    assert errors["faulty/t001/e0001"] == "environment RuntimeError: simulated simulator failure"  # the actor lives on
    assert records["faulty/t001/e0001"].extra["traceback"].endswith("RuntimeError: simulated simulator failure")  # from the actor
    assert "no step reply within 2 s (step timeout)" in errors["faulty/t002/e0000"]
    died = records["faulty/t003/e0001"]  # its actor SIGKILLed itself mid-episode
    assert re.fullmatch(rf"ray actor pid {died.worker['pid']} on \S+ died \(ActorDiedError: .*\)", died.error)
    assert died.success is None
    for record in records.values():  # every other episode ran normally, on a rebuilt env or a fresh actor
        if record.status == "ok":
            assert record.success == (record.init_state_id % 2 == 0) and record.steps == (3 if record.success else 5)
    assert not cluster.stopped(), "the run stopped a cluster it only joined"


def test_lazy_run_on_ray_matches_the_eager_run(cluster: Cluster, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lazy rendering on Ray (chunks of 8, two actors, a video episode and one without) reproduces
    the local eager chunk-1 run of ``test_lazy_rendering.py``: trajectories, every observation the
    policy was shown, video frames. Driven from this process, joining the cluster."""
    from test_lazy_rendering import check_against, eager_reference_run, register_probe, run

    from vitabench.runner.ray_executor import RayExecutor

    reference = eager_reference_run(tmp_path_factory)
    register_probe()
    monkeypatch.setenv("RAY_TMPDIR", cluster.env["RAY_TMPDIR"])  # where "auto" finds the cluster
    with RayExecutor(2, "auto", lazy_rendering=True) as executor:
        result = run(tmp_path, "ray8", chunk=8, executor=executor)
    check_against(reference, result, 8)
    assert len({r.worker["pid"] for r in result["records"].values()}) == 2  # one actor per episode
    assert not cluster.stopped(), "the run stopped a cluster it only joined"


def test_bad_ray_address_exits_2_writing_nothing(ray_env: dict[str, str], tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "run"
    done = vitabench([*RUN, "--executor", "ray", "--ray-address", address, "--max-steps", "5", "--out", str(out)], ray_env, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no Ray cluster answers at 127.0.0.1:" in errors[0] and repr(address) in errors[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--executor", "ray", "--ray-address", "nohost"], "--ray-address 'nohost'; accepted: auto, HOST:PORT"),
        (["--executor", "dask"], "--executor 'dask'; accepted: local, ray"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    ],
    ids=["bad-address", "unknown-executor", "address-without-ray"],
)
def test_executor_options_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], options: list[str], message: str) -> None:
    """The console entry point in this process: exit code 2, one ``error:`` line, nothing written."""
    from vitabench.cli import main

    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["vitabench", *RUN, *options, "--max-steps", "5", "--out", str(out)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not out.exists()
