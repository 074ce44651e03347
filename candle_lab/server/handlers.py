"""Thin tornado handlers: HTTP <-> :mod:`candle_lab.api`; every one needs a logged-in user."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from candle_lab import __version__, api, settings
from candle_lab.errors import CandleLabError, SpecError, expected_got
from candle_lab.spec import spec_from_dict
from candle_lab.store import DB_NAME
from candle_lab.store.layout import REPORT_NAME

log = logging.getLogger(__name__)

API = "candle-lab/api"
APP = "candle-lab-app"  # the Panel app behind jupyter-server-proxy (see candle_lab.server.proxy)
EXP_ID = r"[A-Za-z0-9_-]+"  # an id in the experiments folder, never a path
EXP = rf"(?P<exp_id>{EXP_ID})"
ANY_EXP = r"(?P<exp_id>[^/]+)"  # any path segment: checked against EXP by the handler (400 naming it)
MAX_BODY = 1 << 20  # a spec is a few kB; larger bodies are refused before parsing


def _status(status: api.Status) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "progress": status.progress}


class BaseHandler(APIHandler):
    @property
    def root(self) -> Path:
        return Path(self.settings["candle_lab_root"])

    def answer(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    def fail(self, status: int, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        self.answer({"message": message, "problems": [{"field": f, "message": m} for f, m in problems or []]}, status)

    def body(self, what: str) -> dict[str, Any] | None:
        """The request's JSON object; None after answering why it is not one."""
        if len(self.request.body) > MAX_BODY:
            self.fail(413, f"body: expected at most {MAX_BODY} bytes ({what}), got {len(self.request.body)}")
            return None
        try:
            body = json.loads(self.request.body.decode("utf-8") or "null")
        except UnicodeDecodeError:
            self.fail(400, f"body: expected a JSON object ({what}) in UTF-8, got bytes that are not UTF-8")
            return None
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.fail(400, f"body: expected a JSON object ({what}), got invalid JSON: {reason}")
            return None
        if not isinstance(body, dict):
            self.fail(400, f"body: {expected_got(f'a JSON object ({what})', body)}")
            return None
        return body

    def started(self, start: Callable[[], api.Experiment]) -> None:
        """Start an experiment in the background: 201 with its status, or 400 naming what
        was wrong."""
        try:
            exp = start()
        except SpecError as exc:
            self.fail(400, str(exc), exc.problems)
            return
        except CandleLabError as exc:
            self.fail(400, str(exc))
            return
        log.info("started %s", exp.id)
        self.answer(_status(exp.status()), 201)

    def experiment(self, exp_id: str) -> api.Experiment | None:
        path = self.root / exp_id
        # A link in the experiments folder to a folder elsewhere is not an experiment of it.
        inside = path.resolve().parent == self.root.resolve() and not path.is_symlink()
        if not inside or not (path / DB_NAME).is_file():
            self.fail(404, f"experiment: no experiment {exp_id!r} in {self.root}")
            return None
        return api.Experiment(path)


class InfoHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        base = self.settings.get("base_url", "/")
        self.answer({"version": __version__, "root": str(self.root), "dashboard": url_path_join(base, APP) + "/"})


class ExperimentsHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.answer({"experiments": [_status(s) for s in api.statuses(self.root)]})

    @tornado.web.authenticated
    def post(self) -> None:
        body = self.body("an experiment spec")
        if body is None:
            return
        if set(body) == {"spec"}:
            body = body["spec"]
        if not isinstance(body, dict):
            self.fail(400, f"body: {expected_got('a JSON object (an experiment spec)', body)}")
            return
        base_dir = Path(self.settings.get("server_root_dir") or ".")
        self.started(lambda: api.run(api.check(spec_from_dict(body, base_dir=base_dir)), wait=False, root=self.root))


class ExperimentHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self, exp_id: str) -> None:
        exp = self.experiment(exp_id)
        if exp is not None:
            trials = [dataclasses.asdict(t) for t in exp.records()]
            self.answer({**_status(exp.status()), "spec": exp.spec.to_dict(), "trials": trials})


class StopHandler(BaseHandler):
    @tornado.web.authenticated
    def post(self, exp_id: str, trial_id: str | None = None) -> None:
        exp = self.experiment(exp_id)
        if exp is None:
            return
        if trial_id is None:
            exp.stop()
        elif exp.trial(int(trial_id)) is None:
            self.fail(404, f"trial: experiment {exp.id} has no trial {trial_id}")
            return
        else:
            exp.stop_trial(int(trial_id))
        self.answer({"requested": "stop", "experiment": exp.id, "trial": None if trial_id is None else int(trial_id)},
                    202)


class EnsembleHandler(BaseHandler):
    """POST ``{"top": 1, "method": "bootstrap", "members": 10}``: an uncertainty
    ensemble of the experiment's best configurations, started in the background."""

    OPTIONS: ClassVar[dict[str, type]] = {"top": int, "method": str, "members": int, "workers": int, "seed": int}

    @tornado.web.authenticated
    def post(self, exp_id: str) -> None:
        exp = self.experiment(exp_id)
        body = self.body("ensemble options: top, method, members") if exp is not None else None
        if exp is None or body is None:
            return
        for key, value in body.items():
            kind = self.OPTIONS.get(key)
            if kind is None:
                self.fail(400, f"{key}: expected one of {', '.join(self.OPTIONS)}, got an unknown option")
                return
            if not isinstance(value, kind) or isinstance(value, bool):
                self.fail(400, f"{key}: {expected_got('a whole number' if kind is int else 'text', value)}")
                return
        self.started(lambda: api.ensemble(exp, wait=False, root=self.root, **body))


SHARED_PLOTLY = 'src="../plotly.min.js"'  # a report linking the plotly.js written beside its folder


class ReportHandler(BaseHandler):
    """The experiment's HTML report (``report.html``), written first when it is missing or
    older than the experiment's store. Its scripts run in a sandbox (a unique origin, as
    Jupyter serves HTML files): they cannot call the server with the user's login."""

    _locks: ClassVar[dict[Path, threading.Lock]] = {}
    _guard = threading.Lock()

    @property
    def content_security_policy(self) -> str:
        # Not APIHandler's "default-src 'none'": it would block the report's plotly.
        return super(APIHandler, self).content_security_policy + "; sandbox allow-scripts"

    @tornado.web.authenticated
    async def get(self, exp_id: str) -> None:
        if not re.fullmatch(EXP_ID, exp_id):
            expected = "an experiment id like EXP003 (letters, digits, _ and -)"
            self.fail(400, f"experiment: {expected_got(expected, exp_id)}")
            return
        exp = self.experiment(exp_id)
        if exp is None:
            return
        try:
            page = await asyncio.to_thread(self.report, exp)  # plotting takes seconds: off the event loop
        except CandleLabError as exc:
            self.fail(400, str(exc))
            return
        self.finish(page, set_content_type="text/html; charset=UTF-8")

    @classmethod
    def report(cls, exp: api.Experiment) -> str:
        """The report's text, written anew when the store changed since it was written, or
        when it links a plotly.js beside it (``candle-lab report --plotly shared``), which
        this route does not serve: the page it serves carries its own."""
        from candle_lab.html_report import write_report

        with cls._guard:
            lock = cls._locks.setdefault(exp.path.resolve(), threading.Lock())
        with lock:  # one writer per experiment; a request meanwhile waits, then reads its file
            out = exp.path / REPORT_NAME
            store = [exp.path / DB_NAME, exp.path / f"{DB_NAME}-wal"]  # WAL: recent writes may sit in -wal
            changed = max(f.stat().st_mtime_ns for f in store if f.exists())
            page = out.read_text(encoding="utf-8") if out.is_file() and out.stat().st_mtime_ns >= changed else ""
            if not page or SHARED_PLOTLY in page:
                write_report(exp)
                log.info("wrote the report of %s", exp.id)
                page = out.read_text(encoding="utf-8")
            return page


class NotFoundHandler(BaseHandler):
    """Any other path under the API: a JSON 404 (not Jupyter's HTML page)."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.fail(404, f"path: no candle_lab API route {self.request.path!r}; see {API}/info")

    post = put = patch = delete = get


def experiments_folder(serverapp: Any) -> Path:
    return (settings.home() or Path(serverapp.root_dir) / "experiments").resolve()


def setup_handlers(serverapp: Any) -> None:
    web_app = serverapp.web_app
    root = experiments_folder(serverapp)
    settings.share_home(root)  # the proxied dashboard reads the same folder
    web_app.settings["candle_lab_root"] = str(root)
    base = url_path_join(web_app.settings["base_url"], API)
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "info"), InfoHandler),
            (url_path_join(base, "experiments"), ExperimentsHandler),
            (url_path_join(base, "experiments", EXP), ExperimentHandler),
            (url_path_join(base, "experiments", EXP, "stop"), StopHandler),
            (url_path_join(base, "experiments", EXP, "ensemble"), EnsembleHandler),
            (url_path_join(base, "experiments", ANY_EXP, "report"), ReportHandler),
            (url_path_join(base, "experiments", EXP, "trials", r"(?P<trial_id>\d+)", "stop"), StopHandler),
            (url_path_join(base, ".*"), NotFoundHandler),
        ],
    )
    serverapp.log.info("candle_lab: REST API at %s, experiments in %s", base, root)
