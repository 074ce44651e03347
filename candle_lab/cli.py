"""``candle-lab``: the command line, a thin layer over :mod:`candle_lab.api`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from candle_lab import api, planner, settings
from candle_lab.errors import CandleLabError, SpecError
from candle_lab.html_report import write_report
from candle_lab.spec import ExperimentSpec, load_spec
from candle_lab.store import list_experiments
from candle_lab.trial.output import configure_native_logs

log = logging.getLogger("candle_lab.cli")


class ProgressBar:
    """A tqdm bar fed by the engine's progress updates."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="trial", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, progress: Any) -> None:
        if self._bar is None:
            return
        self._bar.total = progress.max_trials or max(progress.created, 1)
        self._bar.n = progress.finished
        best = "-" if progress.best is None else f"{progress.best:.5g}"
        self._bar.set_postfix_str(f"running={progress.running} failed={progress.failed} best={best}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _finish(exp: api.Experiment, quiet: bool) -> int:
    status = exp.status()
    report = write_report(exp)
    if quiet:
        return 0
    print(
        f"experiment {exp.id} {status.state} ({status.ended_because or '-'}): "
        f"{status.completed} completed, {status.failed} failed of {status.trials} trials"
    )
    best = exp.best
    if best is None:
        print("no completed trial")
    else:
        print(f"best trial: {best.trial_id} ({best.run_id}) {exp.spec.objective.metric}={best.objective:.6g}")
        print(f"  parameters: {json.dumps(best.params)}")
        print(f"  run folder: {exp.path / best.run_id}")
    if exp.spec.ensemble is not None:
        _print_uncertainty(exp)
    print(f"report: {report}")
    return 0


def _print_uncertainty(exp: api.Experiment) -> None:
    for config in exp.uncertainty():
        cal, summary = config.calibration, config.summary
        coverage = ", ".join(f"{p:.0%}: {v:.0%}" for p, v in cal.coverage.items())
        print(
            f"uncertainty of trial {config.trial_id} ({config.members} members, {len(summary)} samples): "
            f"mean std {summary['std'].mean():.4g}, RMSE {float((summary['error'] ** 2).mean()) ** 0.5:.4g}, "
            f"|error|~std rank correlation {cal.spearman:.2f}; coverage of nominal intervals {coverage}"
        )


def cmd_ensemble(args: argparse.Namespace) -> int:
    source = api.open_experiment(args.experiment, args.root)
    spec = api.ensemble_spec(
        source, top=args.top, method=args.method, members=args.members, workers=args.workers, seed=args.seed
    )
    path = api.create_experiment(spec, source.path.parent if args.root is None else args.root)
    print(f"experiment {path.name}: {args.method} ensemble of {source.id}'s {args.top} best: {path}", file=sys.stderr)
    _quiet_dask(args.log_level)
    return _drive(api.Experiment(path), args.quiet)


def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.max_trials is not None:
        spec = spec.replace(budget={"max_trials": args.max_trials})
    if args.workers is not None:
        spec = spec.replace(compute={"workers": args.workers})
    if args.detach:
        exp = api.run(spec, wait=False, root=args.root)
        print(f"experiment {exp.id} started in the background: {exp.path}")
        return 0
    path = api.create_experiment(spec, args.root)
    print(f"experiment {path.name}: {path}", file=sys.stderr)
    _quiet_dask(args.log_level)
    return _drive(api.Experiment(path), args.quiet)


def cmd_resume(args: argparse.Namespace) -> int:
    exp = api.open_experiment(args.experiment, args.root)
    changing = args.budget is not None or args.workers is not None
    if changing:
        spec = exp.change(max_trials=args.budget, workers=args.workers)
        print(f"{exp.id}: budget {spec.budget.max_trials if spec.budget.max_trials is not None else 'unlimited'} "
              f"trials, {spec.compute.workers} workers", file=sys.stderr)
    if exp.driver_alive():
        if changing:
            return 0  # the running driver takes the change
        raise CandleLabError(f"experiment {exp.id} is still running; stop it first (candle-lab stop {exp.id})")
    _quiet_dask(args.log_level)
    return _drive(exp, args.quiet)


def cmd_extend(args: argparse.Namespace) -> int:
    source = api.open_experiment(args.experiment, args.root)
    spec = api.as_spec(api.extend_spec(source, args.space, max_trials=args.budget))
    path = api.create_experiment(spec, args.root if args.root is not None else source.path.parent)
    exp = api.Experiment(path)
    for event in exp.events(["warm-start"]):
        print(f"warm start: {event[3]['text']}", file=sys.stderr)
    print(f"experiment {exp.id}: {exp.path}", file=sys.stderr)
    _quiet_dask(args.log_level)
    return _drive(exp, args.quiet)


def _quiet_dask(level: int) -> None:
    """dask sets its own log levels when imported; keep them to the CLI's verbosity."""
    import distributed  # noqa: F401  (configures its loggers on import)

    for name in ("distributed", "tornado", "bokeh", "bokeh.server.util"):
        logging.getLogger(name).setLevel(level if level < logging.INFO else logging.WARNING)


def _drive(exp: api.Experiment, quiet: bool) -> int:
    bar = ProgressBar(exp.spec.budget.max_trials, enabled=not quiet and sys.stderr.isatty())
    try:
        api.drive(exp.path, observer=bar)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; completed trials are kept. Continue with: candle-lab resume {exp.id}", file=sys.stderr)
        return 130
    bar.close()
    return _finish(exp, quiet)


def cmd_status(args: argparse.Namespace) -> int:
    exp = api.open_experiment(args.experiment, args.root)
    if args.efficiency:
        return _print_efficiency(exp, args.json)
    status = exp.status()
    if args.json:
        print(json.dumps(status.__dict__))
        return 0
    print(f"{status.id} {status.name}: {status.state}" + (f" ({status.ended_because})" if status.ended_because else ""))
    print(f"trials: {status.trials} ({status.completed} completed, {status.failed} failed, {status.running} running)")
    if exp.spec.multi_objective:
        _print_front(exp)
        return 0
    best = exp.best
    if best is not None:
        print(f"best: {best.objective:.6g} (trial {best.trial_id}) {json.dumps(best.params)}")
    return 0


def _print_front(exp: api.Experiment) -> None:
    import pandas as pd

    goals = exp.spec.goals
    front = exp.pareto
    arrows = ", ".join(f"{g.metric} {'↓' if g.direction == 'minimize' else '↑'}" for g in goals)
    print(f"Pareto front ({arrows}): {len(front)} trials")
    for _, row in front.iterrows():
        values = "  ".join(f"{g.metric}={float(row[f'metric.{g.metric}']):.6g}" for g in goals)
        params = {c[6:]: row[c] for c in front.columns if c.startswith("param.") and not pd.isna(row[c])}
        print(f"  trial {int(row['trial_id'])}: {values}  {json.dumps(params, default=str)}")


def _print_efficiency(exp: api.Experiment, as_json: bool) -> int:
    from candle_lab import efficiency

    figures = exp.efficiency()
    if as_json:
        print(json.dumps({"experiment": exp.id, **figures.as_dict()}))
        return 0
    print(f"{exp.id} {exp.spec.name}: efficiency ({figures.unit}-hours)")
    print(efficiency.table(figures))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    workers = None if args.workers is None else planner.parse_workers(args.workers, "--workers")
    modes = None if args.mode is None else planner.parse_modes(args.mode, "--mode")
    if args.trials is not None and args.trials < 1:
        raise SpecError.one("--trials", f"expected a whole number ≥ 1, got {args.trials}")
    exp = api.open_experiment(args.experiment, args.root)
    measured = exp.measured()
    rows = planner.plan(measured, workers, modes, trials=args.trials, seed=args.seed)
    if args.json:
        figures = {k: v for k, v in measured.__dict__.items() if k not in ("durations", "notes")}
        figures.update(idle=measured.idle, median_duration=measured.median_duration)
        print(json.dumps({"experiment": exp.id, "measured": figures, "notes": list(measured.notes),
                          "rows": [row.as_dict() for row in rows]}))
        return 0
    print(planner.text_table(exp.id, measured, rows))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    exp = api.open_experiment(args.experiment, args.root)
    if args.trial is None:
        exp.stop()
        print(f"asked {exp.id} to stop")
    else:
        exp.stop_trial(args.trial)
        print(f"asked {exp.id} to stop trial {args.trial}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(args.experiment, args.output, root=args.root, plotly=args.plotly))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    spec = api.check(load_spec(args.spec))  # what run checks, the compute request on its profile included
    space = spec.space.search_space()
    print(
        f"{args.spec}: valid. {spec.search.algorithm} over {len(space.searchable)} parameters"
        f" ({len(space.constants)} constant), {spec.compute.workers} workers on profile {spec.compute.profile!r}"
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(ExperimentSpec.json_schema(), indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for exp_id in list_experiments(args.root):
        try:
            s = api.open_experiment(exp_id, args.root).status()
        except Exception as exc:  # an unreadable experiment must not hide the others
            print(f"{exp_id}  unreadable ({exc})")
            continue
        best = "-" if s.best is None else f"{s.best:.6g}"
        print(f"{s.id}  {s.state:<11} {s.trials:>5} trials  best {best:<12} {s.name}")
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    from candle_lab.kernels import install_kernel

    folder = install_kernel(
        user=args.prefix is None and not args.sys_prefix, prefix=args.prefix, container=args.container
    )
    print(f"installed the Jupyter kernel 'CANDLE Lab (TensorFlow)' in {folder}")
    return 0


def cmd_job_script(args: argparse.Namespace) -> int:
    from candle_lab.clusters import resolve
    from candle_lab.clusters.slurm import job_script

    spec = load_spec(args.spec)
    resolved = resolve(spec.compute)
    if resolved.profile.scheduler != "slurm":
        raise SpecError.one("compute.profile", f"expected a SLURM profile, got {resolved.profile.name!r} (local)")
    print(job_script(resolved, Path(args.spec).resolve().parent / "experiments" / "EXPnnn"))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from candle_lab.ui.server import ServeOptions, start_server

    options = ServeOptions(
        address=args.address,
        port=args.port,
        unix_socket=args.unix_socket or "",
        prefix=args.prefix or "",
        root_path=args.root_path or "",
        allow_websocket_origin=tuple(args.allow_websocket_origin or ()),
        password=args.password,
        root=str(args.root or ""),
        experiment=args.experiment,
    )
    server, address, password = start_server(options)
    print(f"candle_lab dashboard: {address}", flush=True)
    if password and not (args.password or settings.password()):  # generated: say it, once
        print(f"password: {password}", flush=True)
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_ondemand_build(args: argparse.Namespace) -> int:
    from candle_lab.ondemand import build_app

    files = build_app(args.site, args.dest, cluster=args.cluster, python=args.python)
    print(f"Open OnDemand app for site {args.site!r}: {len(files)} files in {args.dest}")
    return 0


def cmd_ondemand_check(args: argparse.Namespace) -> int:
    from candle_lab.clusters.profiles import load_profile
    from candle_lab.ondemand import check_form, parse_assignments, site_profile_path

    profile = load_profile(str(site_profile_path(args.site)))
    session = check_form(parse_assignments(args.values), profile, existing_dir=True)
    print(f"{session.mode} on {profile.name}: {' '.join(session.sbatch_args())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="candle-lab", description="Hyperparameter optimization on dask and SLURM.")
    parser.add_argument(
        "--root", type=Path, default=None, help=f"experiments folder (default: ${settings.HOME_ENV} or ./experiments)"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more log output, TensorFlow's native notices on the terminal, not in each trial's output.log "
             "(-vv: debug)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start an experiment from a spec file and wait for it")
    p.add_argument("spec", type=Path, help="experiment spec (YAML or JSON)")
    p.add_argument("--max-trials", type=int, default=None, help="override budget.max_trials")
    p.add_argument("--workers", type=int, default=None, help="override compute.workers")
    p.add_argument("--detach", action="store_true", help="run in the background and return at once")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a stopped or crashed experiment (completed trials are kept); "
                                      "with --budget or --workers, change a running one")
    p.add_argument("experiment", help="experiment id (EXP000) or folder")
    p.add_argument("--budget", type=int, default=None, help="new budget.max_trials (all trials, done ones included)")
    p.add_argument("--workers", type=int, default=None, help="new compute.workers")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("extend", help="a new experiment over another space, warm-started from an experiment's trials")
    p.add_argument("experiment", help="experiment id (EXP000) or folder to learn from")
    p.add_argument("--space", required=True, help="the new space: a YAML/JSON list of parameters, or a GA/grid file")
    p.add_argument("--budget", type=int, default=None, help="budget.max_trials of the new experiment")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("ensemble", help="uncertainty quantification: ensembles of an experiment's best configurations")
    p.add_argument("experiment", help="the finished experiment (id or folder)")
    p.add_argument("--top", type=int, default=1, help="best configurations to ensemble (default 1)")
    p.add_argument("--method", choices=["bootstrap", "dropout"], default="bootstrap",
                   help="bootstrap: a model per resample; dropout: Monte Carlo dropout passes")
    p.add_argument("--members", type=int, default=10, help="models (bootstrap) or passes (dropout) per configuration")
    p.add_argument("--workers", type=int, default=None, help="override compute.workers")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples and passes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("status", help="state, trial counts and best trial of an experiment")
    p.add_argument("experiment")
    p.add_argument("--json", action="store_true")
    p.add_argument("--efficiency", action="store_true",
                   help="HPC efficiency instead: GPU-hours (worker-hours without GPUs) allocated, in trials, idle, "
                        "lost to failed and stopped trials; GPU busy %%, queue waits, start-up")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("plan", help="what-if: wall time, idle and GPU-hours on other worker counts and modes")
    p.add_argument("experiment", help="the experiment to measure (id or folder)")
    p.add_argument("--workers", default=None, metavar="N,N,...",
                   help="worker counts to simulate, e.g. 8,32,128 (default: ½, 1, 2, 4 and 8 × the real run's)")
    p.add_argument("--mode", default=None, metavar="MODE,...", help="async, batch or async,batch (the default)")
    p.add_argument("--trials", type=int, default=None, help="trials to simulate (default: as many as ran)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    p.add_argument("--json", action="store_true", help="print the figures and rows as JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("stop", help="stop an experiment, or one trial of it")
    p.add_argument("experiment")
    p.add_argument("--trial", type=int, default=None, help="stop only this trial")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("report", help="write the HTML report of an experiment")
    p.add_argument("experiment")
    p.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: EXP/report.html)")
    p.add_argument("--plotly", choices=["inline", "cdn", "shared"], default="inline",
                   help="inline: plotly.js in the file (4.8 MB, works offline; the default); cdn: loaded from "
                        "plotly's CDN; shared: one plotly.min.js in the folder above the report's, for every report")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("validate", help="check a spec file without running it")
    p.add_argument("spec", type=Path)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of experiment specs")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("list", help="list experiments")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("job-script", help="show the SLURM batch script of a spec's workers (submits nothing)")
    p.add_argument("spec", type=Path)
    p.set_defaults(func=cmd_job_script)

    p = sub.add_parser("dashboard", help="serve the web app: forms, live dashboard, experiment browser")
    p.add_argument("--address", default="127.0.0.1", help="listen address (default: loopback only)")
    p.add_argument("--port", type=int, default=5006, help="port (0: any free port)")
    p.add_argument("--unix-socket", default=None, help="serve on this Unix socket (in a 0700 folder), not a port")
    p.add_argument("--prefix", default=None, help="URL prefix behind a portal, e.g. /node/HOST/PORT")
    p.add_argument("--root-path", default=None, help="root path the proxy strips (default: the prefix)")
    p.add_argument(
        "--allow-websocket-origin", action="append", default=None, metavar="HOST[:PORT]",
        help="browser origin allowed to connect (repeatable)",
    )
    p.add_argument(
        "--password", default=None,
        help=f"password to log in (default: ${settings.PASSWORD_ENV}; generated when not on loopback)",
    )
    p.add_argument("--experiment", default=None, help="open this experiment on the dashboard")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("kernel", help="install the Jupyter kernel 'CANDLE Lab (TensorFlow)'")
    p.add_argument("action", choices=["install"])
    p.add_argument("--prefix", default=None, help="install under PREFIX/share/jupyter/kernels")
    p.add_argument("--sys-prefix", action="store_true", help="install into this environment")
    p.add_argument("--container", default=None, help="run the kernel inside this Apptainer image")
    p.set_defaults(func=cmd_kernel)

    p = sub.add_parser("ondemand", help="Open OnDemand app: the dashboard or JupyterLab on a cluster node")
    ood = p.add_subparsers(dest="ondemand_command", required=True, metavar="ACTION")
    p = ood.add_parser("build", help="generate the app from a site profile")
    p.add_argument("dest", type=Path, help="folder to write the app to")
    p.add_argument("--site", required=True, help="site profile name (biowulf) or YAML file")
    p.add_argument("--cluster", default=None, help="Open OnDemand cluster id (default: the profile's name)")
    p.add_argument("--python", default=None, help="interpreter with candle_lab on the nodes (default: the profile's)")
    p.set_defaults(func=cmd_ondemand_build)
    p = ood.add_parser("check", help="check a session's form values against a site profile")
    p.add_argument("--site", required=True, help="site profile name or YAML file")
    p.add_argument("values", nargs="*", metavar="FIELD=VALUE", help="form values (mode=dashboard partition=gpu ...)")
    p.set_defaults(func=cmd_ondemand_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Before anything imports TensorFlow; inherited by the workers and a detached driver.
    configure_native_logs(args.verbose > 0)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.log_level = level
    try:
        return int(args.func(args))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CandleLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
