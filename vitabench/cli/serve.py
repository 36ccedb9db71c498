"""``vitabench serve``: serve a registered policy over a websocket (openpi convention)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vitabench.serving import DEFAULT_MAX_MESSAGE_BYTES


def serve(
    policy: str = typer.Option(..., "--policy", help="Registered policy name (see `vitabench list policies`)."),
    policy_arg: list[str] = typer.Option(
        [], "--policy-arg", help="key=value passed to the policy (JSON values parsed); repeatable."
    ),
    policy_config: Optional[Path] = typer.Option(None, "--policy-config", help="TOML or JSON file of policy arguments."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0 picks a free one)."),
    max_message_bytes: int = typer.Option(
        DEFAULT_MAX_MESSAGE_BYTES, "--max-message-bytes", help="Larger requests get an error frame."
    ),
    protocol: Optional[str] = typer.Option(
        None, "--protocol", help="Protocol openpi-style observations are converted to [default: the checkpoint's, else standard]."
    ),
    client_orientation: str = typer.Option(
        "rot180", "--client-orientation", help="Orientation of the images openpi-style clients send: rot180 (openpi's LIBERO client) | raw."
    ),
) -> None:
    """Serve POLICY to openpi-style clients: metadata on connect, msgpack-numpy requests,
    ``{"actions": chunk}`` replies; vitabench clients also send reset and batched act messages."""
    from vitabench.api.protocol import load_protocol
    from vitabench.cli.policy_options import parse_policy_args
    from vitabench.plugins import POLICIES, make_policy
    from vitabench.serving import PolicyServer

    args = parse_policy_args(policy_arg, policy_config)
    instance = make_policy(policy, **args)
    server = PolicyServer(
        instance,
        name=POLICIES.canonical(policy),
        args=args,
        host=host,
        port=port,
        max_message_bytes=max_message_bytes,
        protocol=None if protocol is None else load_protocol(protocol),
        client_orientation=client_orientation,
    )
    server.serve_forever(on_ready=lambda url: typer.echo(f"serving {policy} on {url}", err=False))
