"""User configuration files: every reader gives one line naming the file and what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitabench.api.config import read_config, read_json
from vitabench.api.errors import VitabenchError
from vitabench.models.checkpoint import SPEC_FILE, WEIGHTS_FILE, CheckpointError, read_checkpoint
from vitabench.runner.store import RunDirError, RunStore


class Custom(VitabenchError):
    pass


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "is not valid JSON"), ("[1, 2]", "must hold a table/object, not list"), (None, "cannot be read")],
)
def test_read_json_names_the_file_and_the_fault(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "settings.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(Custom) as raised:
        read_json(path, "settings file", Custom)
    line = str(raised.value)
    assert "\n" not in line and line.startswith(f"settings file {str(path)!r}") and message in line


def test_read_config_chooses_the_parser_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": 1}')
    (tmp_path / "a.toml").write_text("x = 1\n")
    assert read_config(tmp_path / "a.json", "f") == read_config(tmp_path / "a.toml", "f") == {"x": 1}
    (tmp_path / "b.toml").write_text('{"x": 1}')  # JSON in a .toml file is a TOML error
    with pytest.raises(VitabenchError, match="is not valid TOML"):
        read_config(tmp_path / "b.toml", "f")


def test_checkpoint_and_run_files_use_the_same_reader(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for name in ("config.json", WEIGHTS_FILE, SPEC_FILE):
        (checkpoint / name).write_text("[]")
    with pytest.raises(CheckpointError, match=r"checkpoint file .*config\.json' must hold a table/object, not list"):
        read_checkpoint(checkpoint, "teacher")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunDirError, match="is not a vitabench run directory"):
        RunStore(run).config()
    (run / "run.json").write_text("{torn")
    with pytest.raises(RunDirError, match=r"run file .*run\.json' is not valid JSON"):
        RunStore(run).config()


def test_lineage_and_pva_files_use_the_same_reader(tmp_path: Path) -> None:
    from vitabench.pva.models import Aligner
    from vitabench.models.checkpoint import LINEAGE_FILE, read_lineage

    with pytest.raises(VitabenchError, match=f"has no {LINEAGE_FILE}"):
        read_lineage(tmp_path)
    (tmp_path / LINEAGE_FILE).write_text("{torn")
    with pytest.raises(VitabenchError, match=r"lineage file .* is not valid JSON"):
        read_lineage(tmp_path)
    (tmp_path / LINEAGE_FILE).write_text('{"kind": "teacher"}')
    with pytest.raises(VitabenchError, match="holds no lineage"):
        read_lineage(tmp_path)
    for name in ("aligner.json", "aligner.pt"):
        (tmp_path / name).write_text("{torn")
    with pytest.raises(VitabenchError, match=r"aligner file .*aligner\.json' is not valid JSON"):
        Aligner.load(tmp_path)


def test_vlm_directory_files_use_the_same_reader(tmp_path: Path) -> None:
    from vitabench.models.backbones import family, image_input

    (tmp_path / "config.json").write_text("{torn")
    with pytest.raises(VitabenchError, match=r"vlm='.*': config '.*config\.json' is not valid JSON"):
        family(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("[224]")
    with pytest.raises(VitabenchError, match=r"image-processor config .*preprocessor_config\.json' must hold a table/object, not list"):
        image_input(tmp_path, None)
