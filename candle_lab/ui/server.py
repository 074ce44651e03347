"""Serving the Panel app: loopback by default, a password when exposed, URL prefixes
for portals (Open OnDemand ``/node/<host>/<port>/``, jupyter-server-proxy)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from candle_lab import analysis, settings
from candle_lab.errors import MissingDependency, SpecError, expected_got

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ServeOptions:
    """How the dashboard is served; ``check()`` explains what is wrong."""

    address: str = "127.0.0.1"
    port: int = 5006
    unix_socket: str = ""  # serve on this Unix socket instead of a TCP port (jupyter-server-proxy)
    prefix: str = ""
    root_path: str = ""
    allow_websocket_origin: tuple[str, ...] = ()
    password: str | None = None
    root: str = ""
    experiment: str | None = None
    show: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exposed(self) -> bool:
        return self.address not in LOOPBACK and not self.unix_socket

    def check(self) -> ServeOptions:
        if not 0 <= self.port <= 65535:
            raise SpecError.one("port", expected_got("a port number from 0 to 65535", self.port))
        for name in ("prefix", "root_path"):
            value = getattr(self, name)
            if value and not value.startswith("/"):
                raise SpecError.one(name, expected_got("a path starting with '/', like /node/host/8080", value))
        if self.unix_socket:
            folder = os.path.dirname(os.path.abspath(self.unix_socket))
            if not os.path.isdir(folder) or os.stat(folder).st_mode & 0o077:
                raise SpecError.one(
                    "unix_socket", f"expected a socket path in an existing folder only its owner can open (0700), "
                    f"got {self.unix_socket!r}"
                )
        if self.password is not None and len(self.password) < 8:
            raise SpecError.one("password", "expected at least 8 characters")
        return self

    def origins(self, port: int) -> list[str]:
        """Websocket origins: given ones; behind a prefix any (the portal's host is not
        known here, and the portal or the password guards access); else this host."""
        if self.allow_websocket_origin:
            return list(self.allow_websocket_origin)
        if self.prefix or self.exposed:
            return ["*"]
        return [f"localhost:{port}", f"127.0.0.1:{port}"]


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def url(options: ServeOptions, port: int) -> str:
    if options.unix_socket:
        return f"http+unix://{options.unix_socket}{options.prefix.rstrip('/')}/"
    host = "127.0.0.1" if options.address in ("0.0.0.0", "::") else options.address
    return f"http://{host}:{port}{options.prefix.rstrip('/')}/"


def _password_login(password: str) -> Any:
    """Panel's password page, with the password compared in constant time and failed tries
    throttled per client (HTTP 429 and Retry-After while a client must wait)."""
    import math
    import time

    from panel.auth import BasicAuthProvider, BasicLoginHandler

    from candle_lab.ui.throttle import LoginThrottle

    throttle = LoginThrottle()
    expected = password.encode()

    class Login(BasicLoginHandler):
        def _validate(self, username: str, given: str) -> bool:
            ok = secrets.compare_digest(given.encode(), expected)
            throttle.record(self.request.remote_ip or "", ok, time.monotonic())
            if not ok:
                log.warning("dashboard: failed login from %s", self.request.remote_ip)
            return ok

        def post(self) -> None:
            wait = throttle.wait(self.request.remote_ip or "", time.monotonic())
            if wait > 0:
                self.set_status(429)
                self.set_header("Retry-After", str(math.ceil(wait)))
                self.finish(f"Too many failed logins from this address: try again in {math.ceil(wait)} s.")
                return
            super().post()

    class Provider(BasicAuthProvider):
        @property
        def login_handler(self) -> type[Login]:
            Login._login_endpoint = self._login_endpoint
            Login._login_template = self._login_template
            return Login

    return Provider()


def start_server(options: ServeOptions) -> tuple[Any, str, str | None]:
    """Start the server (not its loop); returns it, its URL and the password in force."""
    try:
        import panel as pn
    except ImportError:
        raise MissingDependency("panel", "ui", "the dashboard") from None
    from candle_lab.ui.app import create_app

    options.check()
    port = 0 if options.unix_socket else options.port or free_port(options.address)
    password = options.password or settings.password()
    if options.exposed and not password:
        password = secrets.token_urlsafe(12)  # never serve unauthenticated beyond this host
    kwargs: dict[str, Any] = dict(options.extra)
    if password:
        kwargs.update(auth_provider=_password_login(password), cookie_secret=secrets.token_urlsafe(32))
    if options.prefix:
        kwargs["prefix"] = options.prefix
        kwargs["cookie_path"] = options.prefix.rstrip("/") + "/"  # sessions on one portal host keep their logins
    if options.unix_socket:
        kwargs["unix_socket"] = options.unix_socket  # no TCP port: only this user reaches it
    if options.root_path or options.prefix:
        kwargs["root_path"] = options.root_path or options.prefix.rstrip("/") + "/"
    def session() -> Any:
        return create_app(options.root, options.experiment)

    # What the first analysis imports (seconds): loaded beside the server's loop, not in
    # the first poll of the first experiment opened. narwhals first, here: plotly (in the
    # preload) and Bokeh (a session's first table) both import it, and its two stable APIs
    # import each other, so one importing beside the other failed a session's page with
    # a _DeadlockError.
    with contextlib.suppress(ImportError):
        import narwhals.stable.v1  # noqa: F401
    threading.Thread(target=_preload, name="candle-lab-preload", daemon=True).start()

    server = pn.serve(
        session,
        port=port,
        address=options.address,
        websocket_origin=options.origins(port),
        show=False,
        start=False,
        title="candle_lab",
        **kwargs,
    )
    return server, url(options, port), password


def _preload() -> None:
    """scikit-learn and scipy for the analysis, and plotly's ``FigureWidget``: Panel's
    plotly pane checks every figure against it, and its first use imports ipywidgets,
    anywidget and nbformat's JSON-schema grammars (6 s on two cores, in the poll that
    first drew the analysis, while the page waited)."""
    analysis.preload()
    import plotly.graph_objs as go

    go.FigureWidget  # noqa: B018  (imported on first access)
