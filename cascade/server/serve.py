"""Starting the server: uvicorn on loopback unless told otherwise."""

from __future__ import annotations

import os
import socket

from cascade.core.errors import MissingDependency
from cascade.server.config import ServerConfig


def require_server_extra() -> None:
    """A one-line error when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"{exc.name} is needed to serve: pip install 'cascade-ir[server]'") from None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          log_level: str = "info") -> None:
    """Run until interrupted. With ``workers`` > 1, uvicorn starts that many processes, each
    reading the index through its own snapshots (writes still go through one flock)."""
    require_server_extra()
    import uvicorn

    from cascade.server.app import create_app

    if workers > 1:
        os.environ["CASCADE_SERVER_CONFIG"] = config.to_env()
        uvicorn.run("cascade.server.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, server_header=False)
    else:
        uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, server_header=False)
