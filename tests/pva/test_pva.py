"""PVA on real LIBERO renders: CLIP from a local directory, the three stages' losses, the aligner in vitabench run, the transfer table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import BasePolicy, PolicySpec
from vitabench.policies.pva import PvaPolicy, make
from vitabench.pva.clip import build_clip, load_clip
from vitabench.pva.data import DomainImages, render_domain_images
from vitabench.pva.models import Aligner
from vitabench.pva.train import train_aligner, train_clip, tune_prompts
from vitabench.report.transfer import newcombe_interval, render_transfer, transfer_table

ENV = {**os.environ, "MUJOCO_GL": "egl"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> DomainImages:
    """Scripted-expert frames of libero_object task 0 in three domains (3 scene states x 2 cameras each)."""
    torch.set_num_threads(1)
    data = render_domain_images(
        "libero_object", [0], ["canonical", "warm_light", "blue_surfaces"], init_states=[0], steps=25, every=12
    )
    path = data.save(tmp_path_factory.mktemp("pva") / "images.npz")
    return DomainImages.load(path)


def _falls(losses: list[float], window: int = 5) -> bool:
    return float(np.mean(losses[-window:])) < float(np.mean(losses[:window]))


@pytest.mark.sim
def test_rendered_images_pair_scenes_across_domains(images: DomainImages) -> None:
    assert images.domain_names == ("canonical", "warm_light", "blue_surfaces")
    assert images.images.shape[1:] == (64, 64, 3) and len(images) == 3 * 3 * 2
    canonical = images.select(images.domain == 0)
    warm = images.select(images.domain == 1)
    np.testing.assert_array_equal(canonical.state_id, warm.state_id)
    assert np.abs(canonical.images.astype(int) - warm.images.astype(int)).mean() > 5


@pytest.mark.model
def test_clip_loads_from_a_local_directory_with_the_real_vocabulary(tmp_path: Path) -> None:
    clip = load_clip(build_clip(tmp_path / "clip", "tiny"))
    assert clip.tokenize(["a robot"])[0, :4].tolist() == [49406, 320, 8797, 49407]  # CLIP's own ids
    again = load_clip(tmp_path / "clip")
    with torch.no_grad():
        assert torch.allclose(clip.encode_texts(["a dim room"]), again.encode_texts(["a dim room"]))
    with pytest.raises(VitabenchError, match="holds no config.json"):
        load_clip(tmp_path)


@pytest.mark.sim
@pytest.mark.model
def test_three_stages_losses_fall(images: DomainImages, tmp_path: Path) -> None:
    trained = train_clip(images, tmp_path / "clip", size="tiny", steps=40, batch=12, lr=2e-3)
    assert _falls(trained.losses)
    prompts = tune_prompts(images, build_clip(tmp_path / "untrained", "tiny"), tmp_path / "prompts", steps=40, batch=12, lr=5e-3)
    assert _falls(prompts.losses) and prompts.components["accuracy"][-1] >= 0.5
    aligned = train_aligner(images, tmp_path / "prompts", tmp_path / "aligner", steps=30, batch=12, width=8)
    assert _falls(aligned.losses) and _falls(aligned.components["global"])
    assert set(aligned.components) == {"global", "patch", "content", "identity"}
    meta = json.loads((tmp_path / "aligner" / "aligner.json").read_text())
    assert meta["canonical"] == "canonical" and meta["domains"] == list(images.domain_names)


class _Recorder(BasePolicy):
    spec = PolicySpec(cameras=("agentview", "robot0_eye_in_hand"))

    def __init__(self) -> None:
        self.seen: list = []

    def act(self, observations, slots=None) -> np.ndarray:
        self.seen.extend(observations)
        return np.zeros((len(observations), 1, 7), dtype=np.float32)


@pytest.mark.sim
def test_every_camera_image_goes_through_the_aligner(images: DomainImages) -> None:
    aligner = Aligner()
    identity = PvaPolicy(_Recorder(), aligner, "x")
    observation = {"images": {"agentview": images.images[0], "robot0_eye_in_hand": images.images[1]}, "state": {"ee_pos": np.ones(3)}, "instruction": "pick"}
    identity.act([observation, observation])
    for seen in identity.inner.seen:
        for camera, image in observation["images"].items():
            assert np.abs(seen["images"][camera].astype(int) - image.astype(int)).max() <= 1  # starts as the identity
        assert seen["instruction"] == "pick" and seen["state"] is observation["state"]
    with torch.no_grad():
        aligner.head.bias.fill_(2.0)  # brighten
    brighter = PvaPolicy(_Recorder(), aligner, "x")
    brighter.act([observation])
    for camera, image in observation["images"].items():
        assert brighter.inner.seen[0]["images"][camera].mean() > image.mean() + 20
    assert brighter.checkpoint_hash != PvaPolicy(_Recorder(), aligner, "y").checkpoint_hash
    with pytest.raises(VitabenchError, match="needs --policy-arg aligner=DIR"):
        make(inner="zero")
    with pytest.raises(VitabenchError, match="inner_args=.*accepted: a JSON object"):
        make(aligner=".", inner="zero", inner_args="[1]")


@pytest.mark.sim
@pytest.mark.model
def test_aligner_wrapper_runs_in_vitabench_run_under_a_domain(tmp_path: Path) -> None:
    Aligner().save(tmp_path / "aligner")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vitabench", "run", "--policy", "pva", "--policy-arg", f"aligner={tmp_path / 'aligner'}",
         "--policy-arg", "inner=teacher", "--policy-arg", 'inner_args={"preset": "tiny"}', "--suite", "libero_object",
         "--tasks", "0", "--episodes-per-task", "1", "--protocol", "distill_64", "--max-steps", "3",
         "--domain", "unseen/dusk", "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=ENV, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / "episodes.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "ok" and record["steps"] == 3
    assert record["policy"]["name"] == "pva" and record["policy"]["args"]["inner_args"] == {"preset": "tiny"}
    assert record["domain"] == "unseen/dusk@1" and "+domain=unseen/dusk@1" in record["protocol"]["name"]
    config = json.loads((out / "run.json").read_text())
    assert config["protocol"]["domain"]["light_scale"] == 0.6
    cells = transfer_table([out]).cells  # a real pva run: reported under its inner policy, with its aligner, in its domain
    assert cells[["policy", "aligner", "set", "domain", "n", "errors"]].values.tolist() == [
        ["teacher(preset=tiny)", "aligner", "unseen", "dusk", 1, 0]
    ]


def test_transfer_table_pairs_policies_with_and_without_the_aligner(tmp_path: Path) -> None:
    """``transfer_table`` reads run records only, so the runs are written through the run store
    (tests/report_runs.py, run.json laid out as run_evaluation writes it) with chosen outcomes: the
    zero policy with and without an aligner in a canonical, a seen and an unseen domain, one
    episode errored. A real pva run under a domain feeds the table in
    test_aligner_wrapper_runs_in_vitabench_run_under_a_domain."""
    from report_runs import write_run

    from vitabench.api.protocol import load_protocol
    from vitabench.envs.domains import resolve_domain

    aligner = {"aligner": str(tmp_path / "aligner"), "inner": "zero"}
    # successes among 4 episodes of task 0 (without, with the aligner); the aligned dusk run's last episode errors
    successes = {"canonical": (3, 3), "dim": (2, 3), "dusk": (0, 2)}
    runs = []
    for name, (plain, aligned) in successes.items():
        protocol = load_protocol("distill_64").with_domain(resolve_domain(name))
        for policy, args, k in (("zero", {}, plain), ("pva", aligner, aligned)):
            errored = policy == "pva" and name == "dusk"
            outcome = (lambda e, k=k, errored=errored: None if errored and e.index == 3 else e.index < k)
            runs.append(write_run(tmp_path / f"{policy}-{name}", policy, "libero_object", outcome, protocol=protocol,
                                  tasks=(0,), episodes_per_task=4, args=args))
    table = transfer_table(runs)
    summary = table.summary
    assert summary[["policy", "aligner"]].values.tolist() == [["zero", "none"], ["zero", "aligner"]]
    assert summary["canonical_n"].tolist() == [4, 4] and summary["seen_n"].tolist() == [4, 4] and summary["unseen_n"].tolist() == [4, 3]
    assert summary["canonical_successes"].tolist() == [3, 3] and summary["seen_successes"].tolist() == [2, 3]
    assert summary["unseen_successes"].tolist() == [0, 2] and summary["errors"].tolist() == [0, 1]
    np.testing.assert_allclose(summary["seen_drop"], [2 / 4 - 3 / 4, 3 / 4 - 3 / 4])
    np.testing.assert_allclose(summary["unseen_drop"], [0 / 4 - 3 / 4, 2 / 3 - 3 / 4])
    assert (summary["unseen_drop_low"] < summary["unseen_drop"]).all() and (summary["unseen_drop"] < summary["unseen_drop_high"]).all()
    cells = table.cells.set_index(["aligner", "domain"])
    assert sorted(table.cells["domain"].unique()) == ["canonical", "dim", "dusk"]
    assert cells.loc[("none", "dim"), "set"] == "seen" and cells.loc[("aligner", "dusk"), "set"] == "unseen"
    assert (cells.loc[("aligner", "dusk"), "n"], cells.loc[("aligner", "dusk"), "errors"]) == (3, 1)
    text = render_transfer(table)
    assert "| zero | none | 75% [30, 95] (n=4) | 50% [15, 85] (n=4) | 0% [0, 49] (n=4) |" in text
    assert "| zero | aligner | unseen | dusk | 67% [21, 94] (n=3) | 1 |" in text
    effect = table.aligner_effect.set_index("set")  # paired by episode: the errored one has no pair
    assert effect.index.tolist() == ["canonical", "seen", "unseen"] and effect["pairs"].tolist() == [4, 4, 3]
    assert effect[["b", "c"]].values.tolist() == [[0, 0], [0, 1], [0, 2]] and effect["p"].tolist() == [1.0, 1.0, 0.5]
    np.testing.assert_allclose(effect["difference"], [0, 1 / 4, 2 / 3])
    assert "| zero | aligner | unseen | 3 | 0% | 67% | +67 pp | 0 / 2 | 0.5 |" in text
    # the aligner's runs again as one domain-set run (episode ids end in @SET/NAME) pair with the per-domain runs without it
    from vitabench.envs.domains import resolve_domains
    from vitabench.runner.store import RunStore

    domains = resolve_domains("canonical") + resolve_domains("dim") + resolve_domains("dusk")
    outcome_by_domain = {"canonical": 3, "dim": 3, "dusk": 2}
    set_run = write_run(tmp_path / "pva-set", "pva", "libero_object",
                        lambda e: e.index < outcome_by_domain[e.domain.split("/")[1].split("@")[0]],
                        protocol=load_protocol("distill_64").with_domains(domains, "mixed"), tasks=(0,), episodes_per_task=4, args=aligner)
    assert RunStore(set_run).manifest().episodes[0].episode_id.endswith("@canonical/canonical")
    plain_runs = [run for run in runs if run.name.startswith("zero-")]
    effect = transfer_table(plain_runs + [set_run]).aligner_effect.set_index("set")
    assert effect["pairs"].tolist() == [4, 4, 4] and effect[["b", "c"]].values.tolist() == [[0, 0], [0, 1], [0, 2]]
    low, high = newcombe_interval(9, 10, 5, 10)
    assert low < 0.4 < high and -1 <= low and high <= 1
