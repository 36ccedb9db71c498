"""``vitabench convert``: released weights into what vitabench loads (a Seer checkpoint into a
teacher checkpoint; a VITA-1.5 directory into an InternVL backbone directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Convert released weights (Seer, VITA-1.5) for vitabench.")


@app.command("seer")
def seer(
    checkpoint: Path = typer.Argument(..., help="Seer checkpoint (.pth with model_state_dict)."),
    out: Path = typer.Argument(..., help="Teacher checkpoint directory to write (new)."),
    mae: Optional[Path] = typer.Option(None, "--mae", help="MAE ViT weights (mae_pretrain_vit_base.pth) or a transformers ViT / ViT-MAE directory; needed unless the checkpoint holds vision_encoder.*"),
    clip: Optional[Path] = typer.Option(None, "--clip", help="OpenAI CLIP ViT-B-32.pt or a transformers CLIP directory; needed unless the checkpoint holds clip_model.*"),
    heads: int = typer.Option(12, "--heads", help="Attention heads of Seer's GPT-2 (Seer-Large on LIBERO: 12)."),
    protocol: str = typer.Option("vita_vla_paper", "--protocol", help="Protocol its data was rendered under (Seer's LIBERO loop: vita_vla_paper)."),
    resolution: int = typer.Option(128, "--resolution", help="Render size its LIBERO data had (px)."),
) -> None:
    """Turn a Seer checkpoint into a vitabench teacher checkpoint (architecture seer)."""
    from vitabench.convert import convert_seer, iter_report_lines

    report = convert_seer(checkpoint, out, mae=mae, clip=clip, heads=heads, protocol=protocol, resolution=resolution)
    typer.echo(f"seer: {report.summary()}; wrote {out}")
    for line in iter_report_lines(report):
        typer.echo(line)


@app.command("vita15")
def vita15(
    directory: Path = typer.Argument(..., help="VITA-1.5 directory (config.json, safetensors, tokenizer)."),
    out: Path = typer.Argument(..., help="InternVL directory to write (new)."),
    vision_tower: Optional[Path] = typer.Option(None, "--vision-tower", help="The InternViT directory its config names (default: found beside it, or InternViT-300M-448px's published config)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image size the student feeds it (VITA-VLA: 200; default: the tower's 448)."),
) -> None:
    """Turn a VITA-1.5 directory into a transformers InternVL directory (--backbone DIR)."""
    from vitabench.convert import convert_vita15, iter_report_lines

    report = convert_vita15(directory, out, vision_tower=vision_tower, image_size=image_size)
    typer.echo(f"vita15: {report.summary()}; wrote {out}")
    for line in iter_report_lines(report):
        typer.echo(line)
