"""Open OnDemand: a batch-connect app that starts the dashboard or JupyterLab on a node.

The app (``manifest.yml``, ``form.yml``, ``submit.yml.erb``, ``template/…``,
``view.html.erb``, ``info.md.erb``) is generated from a site profile by
:func:`build_app` (``candle-lab ondemand build --site NAME DEST``), so that the form
offers exactly the profile's partitions, GPU types and limits; regenerate it after
editing the profile. The profile is copied into the app (``template/site_profile.yaml``)
and the session's job checks the form's choices against it with :func:`check_form`
(``candle-lab ondemand check``) before anything starts; ``submit.yml.erb`` refuses
choices outside the profile before anything is submitted.

The session runs behind OnDemand's ``/node/<host>/<port>/`` proxy, protected by a
password generated for the session that the portal's *Connect* button posts to the
login page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from candle_lab.clusters.profiles import (
    ANY_GPU,
    SiteProfile,
    available_profiles,
    load_profile,
    memory_bytes,
    profile_dirs,
    resolve,
    walltime_seconds,
)
from candle_lab.errors import SpecError, expected_got, field_path
from candle_lab.spec import ComputeSpec

log = logging.getLogger(__name__)

APP_NAME = "CANDLE Lab"
MODES = {"dashboard": "CANDLE Lab dashboard", "jupyterlab": "JupyterLab with the CANDLE Lab extension"}
NO_GPU = "none"
FIELDS = ("mode", "working_dir", "partition", "gpu_type", "gpus", "cores", "memory_gb", "hours")
# What a working directory may hold: no shell metacharacters (quotes, $, `, ;, |, &, <, >,
# parentheses, globs, newlines...); a leading ~ stands for the home directory.
SAFE_PATH = re.compile(r"^(~(/[A-Za-z0-9_./+@%,=: -]*)?|[A-Za-z0-9_./+@%,=: -]*)$")
SAFE_PATH_TEXT = "a directory path of letters, digits, spaces and '_./+@%,=:-' (a leading ~ is your home)"
# The form's fields as they appear in a ``compute`` section (to name problems by form field).
COMPUTE_FIELDS = {
    "compute.partition": "partition",
    "compute.gpu_type": "gpu_type",
    "compute.gpus": "gpus",
    "compute.cores": "cores",
    "compute.memory": "memory_gb",
    "compute.walltime": "hours",
}
EXECUTABLE = 0o755
REGULAR = 0o644


# ----------------------------------------------------------------------------- sessions
@dataclass(frozen=True)
class Session:
    """The form's choices once checked: what the session's job asks SLURM for."""

    mode: str
    partition: str
    gpu_type: str | None  # None: no GPU
    gpus: int
    cores: int
    memory_gb: int
    hours: int
    working_dir: str

    @property
    def walltime(self) -> str:
        return f"{self.hours // 24}-{self.hours % 24:02d}:00:00"

    @property
    def gres(self) -> str | None:
        if not self.gpus or self.gpu_type is None:
            return None
        return f"gpu:{self.gpus}" if self.gpu_type == ANY_GPU else f"gpu:{self.gpu_type}:{self.gpus}"

    def sbatch_args(self) -> list[str]:
        """The ``sbatch`` options of the session's job (``submit.yml.erb`` renders the same)."""
        args = [
            f"--partition={self.partition}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={self.cores}",
            f"--mem={self.memory_gb}G",
            f"--time={self.walltime}",
        ]
        if self.gres:
            args.append(f"--gres={self.gres}")
        return args


@dataclass(frozen=True)
class PartitionLimits:
    """What a session may ask of one partition, in the form's units."""

    name: str
    max_hours: int
    cores: int
    memory_gb: int
    gpus: tuple[tuple[str, int], ...]

    def as_json(self) -> dict[str, Any]:
        return {"hours": self.max_hours, "cores": self.cores, "memory_gb": self.memory_gb, "gpus": dict(self.gpus)}


def partition_limits(profile: SiteProfile) -> list[PartitionLimits]:
    """The profile's partitions, the CPU partition first (the dashboard needs no GPU)."""
    names = list(profile.partitions)
    if profile.cpu_partition in names:
        names.remove(profile.cpu_partition)
        names.insert(0, profile.cpu_partition)
    out = []
    for name in names:
        part = profile.partitions[name]
        out.append(
            PartitionLimits(
                name=name,
                max_hours=int(walltime_seconds(part.max_walltime) // 3600),
                cores=part.cores,
                memory_gb=memory_bytes(part.memory) >> 30,
                gpus=tuple(part.gpus.items()),
            )
        )
    return out


def _whole_number(problems: list[tuple[str, str]], field: str, text: str, low: int) -> int:
    if re.fullmatch(r"\d+", text) and int(text) >= low:
        return int(text)
    problems.append((field, expected_got(f"a whole number of at least {low}", text)))
    return low


def check_form(values: Mapping[str, Any], profile: SiteProfile, *, existing_dir: bool = False) -> Session:
    """The form's values (strings, as OnDemand passes them) checked against the profile.

    Raises :class:`SpecError` naming every bad form field (``partition``, ``gpu_type``,
    ``hours``...); the compute limits are :func:`candle_lab.clusters.resolve`'s checks.
    ``existing_dir``: the working directory must exist (checked on the node).
    """
    text = {name: "" if values.get(name) is None else str(values[name]).strip() for name in FIELDS}
    unknown = sorted(set(values) - set(FIELDS))
    problems = [(name, f"unknown form field; expected one of {', '.join(FIELDS)}") for name in unknown]
    if text["mode"] not in MODES:
        problems.append(("mode", expected_got(" or ".join(MODES), text["mode"])))
    workdir = str(values.get("working_dir") or "")
    if not SAFE_PATH.fullmatch(workdir) or workdir != workdir.strip():
        problems.append(("working_dir", expected_got(SAFE_PATH_TEXT, workdir)))
    elif existing_dir and workdir and not Path(workdir).expanduser().is_dir():
        problems.append(("working_dir", expected_got("an existing directory", workdir)))
    gpu_type = text["gpu_type"] or NO_GPU
    gpus = 0 if gpu_type == NO_GPU else _whole_number(problems, "gpus", text["gpus"], 1)
    cores = _whole_number(problems, "cores", text["cores"], 1)
    memory_gb = _whole_number(problems, "memory_gb", text["memory_gb"], 1)
    hours = _whole_number(problems, "hours", text["hours"], 1)
    compute = {
        "profile": profile.name,
        "workers": 1,
        "cores": cores,
        "memory": f"{memory_gb}GB",
        "gpus": gpus,
        "gpu_type": None if gpu_type == NO_GPU else gpu_type,
        "partition": text["partition"] or None,
        "walltime": f"{hours}:00:00",
    }
    if not text["partition"]:
        problems.append(("partition", expected_got(f"one of {', '.join(profile.partitions)}", "")))
    else:
        try:
            resolve(ComputeSpec.model_validate(compute), profile)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                name = COMPUTE_FIELDS.get("compute." + field_path(err["loc"]), field_path(err["loc"]))
                problems.append((name, str(err["msg"]).removeprefix("Value error, ")))
        except SpecError as exc:
            for field, message in exc.problems:
                if field == "compute.walltime":  # in the form's unit
                    name, limit = text["partition"], profile.partitions[text["partition"]].max_walltime
                    most = int(walltime_seconds(limit) // 3600)
                    message = f"partition {name!r} allows at most {most} hours ({limit}), asked for {hours}"
                problems.append((COMPUTE_FIELDS.get(field, field), message))
    if problems:
        raise SpecError(problems, "Open OnDemand session")
    return Session(
        mode=text["mode"],
        partition=text["partition"],
        gpu_type=None if gpu_type == NO_GPU else gpu_type,
        gpus=gpus,
        cores=cores,
        memory_gb=memory_gb,
        hours=hours,
        working_dir=workdir,
    )


# ----------------------------------------------------------------------------- the app
@dataclass(frozen=True)
class AppFile:
    path: str  # relative to the app folder
    text: str
    mode: int = REGULAR


@dataclass(frozen=True)
class AppOptions:
    """What the generated app is made of: a SLURM site profile and where it runs."""

    profile: SiteProfile
    profile_text: str  # the profile's YAML, copied into the app
    site: str  # what --site was given (named in the generated files)
    cluster: str  # Open OnDemand's cluster id (/etc/ood/config/clusters.d/<id>.yml)
    python: str  # interpreter with candle_lab on the compute nodes


def site_profile_path(site: str) -> Path:
    """The YAML file of a profile given by name (``biowulf``) or path."""
    path = Path(site).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    for folder in profile_dirs():
        if (folder / f"{site}.yaml").is_file():
            return folder / f"{site}.yaml"
    names = ", ".join(available_profiles())
    raise SpecError.one("site", expected_got(f"one of {names} or a site profile YAML file", site))


def app_options(site: str, cluster: str | None = None, python: str | None = None) -> AppOptions:
    path = site_profile_path(site)
    profile = load_profile(str(path))
    if profile.scheduler != "slurm" or not profile.partitions:
        given = f"{site} ({profile.scheduler})"
        raise SpecError.one("site", expected_got("a SLURM site profile with partitions", given))
    return AppOptions(
        profile=profile,
        profile_text=path.read_text(encoding="utf-8"),
        site=site,
        cluster=cluster or profile.name,
        python=python or profile.python or "python3",
    )


def _fill(template: str, **values: str) -> str:
    """Replace ``@name@`` markers (templates hold bash and Ruby, full of $ and braces)."""
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    left = re.findall(r"@[a-z_]+@", template)
    if left:
        raise ValueError(f"unfilled markers {left} in an Open OnDemand template")
    return template


def _token(value: str) -> str:
    """A value as OnDemand's dynamic-form directives spell it (``data-option-for-partition-<token>``)."""
    return value.lower().replace("_", "-")


def _yaml(value: Any) -> str:
    return json.dumps(value)  # JSON scalars and flow collections are YAML


def _default_gb(text: Any, fallback: int, cap: int) -> int:
    try:
        return max(1, min(cap, memory_bytes(str(text)) >> 30))
    except ValueError:
        return min(fallback, cap)


def _default_hours(text: Any, fallback: int, cap: int) -> int:
    try:
        return max(1, min(cap, int(walltime_seconds(str(text)) // 3600)))
    except ValueError:
        return min(fallback, cap)


def form_yml(options: AppOptions) -> str:
    """The form: choices and limits from the profile, with OnDemand's dynamic directives
    (GPU types shown only for partitions that have them; hours, cores, memory and GPUs
    capped per partition)."""
    limits = partition_limits(options.profile)
    default = limits[0]
    gpu_types: dict[str, dict[str, int]] = {}  # type -> partition -> GPUs per node
    for part in limits:
        for gpu, count in part.gpus:
            gpu_types.setdefault(gpu, {})[part.name] = count
    lines = [
        f"# Open OnDemand form of the {APP_NAME} app, generated from site profile {options.site!r}",
        f"# by `candle-lab ondemand build --site {options.site}`: edit the profile and regenerate.",
        "---",
        f"cluster: {_yaml(options.cluster)}",
        "form:",
        *[f"  - {name}" for name in FIELDS],
        "attributes:",
        "  mode:",
        "    widget: select",
        '    label: "Start"',
        "    options:",
        *[f"      - {_yaml([label, value])}" for value, label in MODES.items()],
        "    help: |",
        "      The dashboard designs, runs and watches HPO experiments; JupyterLab opens notebooks",
        "      with the CANDLE Lab panels. Experiments started from either keep running after",
        "      this session ends.",
        "  working_dir:",
        "    widget: text_field",
        '    label: "Working directory"',
        '    value: ""',
        "    help: |",
        "      Where the session starts; experiments go to its `experiments/` folder.",
        "      Empty: your home directory.",
        "  partition:",
        "    widget: select",
        '    label: "Partition"',
        "    options:",
    ]
    for part in limits:
        gpus = ", ".join(f"{count} {gpu}" for gpu, count in part.gpus)
        label = f"{part.name}: {part.cores} cores, {part.memory_gb} GB, up to {part.max_hours} h" + (
            f", GPUs {gpus}" if gpus else ""
        )
        data = {"data-max-hours": part.max_hours, "data-max-cores": part.cores, "data-max-memory-gb": part.memory_gb}
        lines.append(f"      - {_yaml([label, part.name, data])}")
    lines += [
        "  gpu_type:",
        "    widget: select",
        '    label: "GPU type"',
        "    options:",
        f"      - {_yaml(['no GPU', NO_GPU, {'data-hide-gpus': True}])}",
    ]
    for gpu, where in gpu_types.items():
        hidden = {f"data-option-for-partition-{_token(p.name)}": False for p in limits if p.name not in where}
        caps = {f"data-max-gpus-for-partition-{_token(p)}": n for p, n in where.items()}
        label = "any GPU" if gpu == ANY_GPU else gpu
        lines.append(f"      - {_yaml([label, gpu, {**hidden, 'data-hide-gpus': False, **caps}])}")
    most_gpus = max((n for where in gpu_types.values() for n in where.values()), default=1)
    memory = _default_gb(options.profile.defaults.get("memory"), 4, min(4, default.memory_gb))
    hours = _default_hours(options.profile.defaults.get("walltime"), 4, default.max_hours)
    lines += [
        "    help: Only the GPU types of the chosen partition are offered.",
        "  gpus:",
        "    widget: number_field",
        '    label: "GPUs"',
        "    value: 1",
        "    min: 1",
        f"    max: {most_gpus}",
        "  cores:",
        "    widget: number_field",
        '    label: "CPU cores"',
        "    value: 1",
        "    min: 1",
        f"    max: {max(p.cores for p in limits)}",
        "    help: The dashboard needs one; the experiments' workers are SLURM jobs of their own.",
        "  memory_gb:",
        "    widget: number_field",
        '    label: "Memory (GB)"',
        f"    value: {memory}",
        "    min: 1",
        f"    max: {max(p.memory_gb for p in limits)}",
        "  hours:",
        "    widget: number_field",
        '    label: "Hours"',
        f"    value: {hours}",
        "    min: 1",
        f"    max: {max(p.max_hours for p in limits)}",
    ]
    return "\n".join(lines) + "\n"


MANIFEST = """\
# Generated from site profile '@site@' by `candle-lab ondemand build`: regenerate, do not edit.
---
name: CANDLE Lab
category: Interactive Apps
subcategory: Machine Learning
role: batch_connect
icon: fa://flask
description: |
  Hyperparameter optimization of cancer deep-learning models: the CANDLE Lab dashboard,
  or JupyterLab with the CANDLE Lab extension, on a node of @cluster@. Experiments
  started from the session run their own SLURM jobs and keep running after it ends.
"""

SUBMIT = """\
<%-
  # Open OnDemand renders this file to submit the session's job. Generated from site
  # profile '@site@' by `candle-lab ondemand build`: edit the profile and regenerate.
  # Choices outside the profile are refused here, before anything is submitted (the job
  # checks them again with `candle-lab ondemand check`).
  require "json"
  limits = JSON.parse('@limits_json@')
  modes = @modes_json@
  safe_path = /@safe_path@/
  problems = []
  number = lambda do |field, text, low|
    value = text.to_s.strip =~ /\\A\\d+\\z/ ? text.to_s.strip.to_i : nil
    if value.nil? || value < low
      problems << "#{field}: expected a whole number of at least #{low}, got #{text.to_s.inspect}"
    end
    value.to_i
  end
  where = partition.to_s.inspect
  problems << "mode: expected #{modes.join(" or ")}, got #{mode.to_s.inspect}" unless modes.include?(mode.to_s)
  unless working_dir.to_s =~ safe_path && working_dir.to_s == working_dir.to_s.strip
    problems << "working_dir: expected @safe_path_text@, got #{working_dir.to_s.inspect}"
  end
  part = limits[partition.to_s]
  problems << "partition: expected one of #{limits.keys.join(", ")}, got #{where}" if part.nil?
  part ||= {"hours" => 0, "cores" => 0, "memory_gb" => 0, "gpus" => {}}
  type = gpu_type.to_s.strip.empty? ? "@no_gpu@" : gpu_type.to_s.strip
  count = type == "@no_gpu@" ? 0 : number.call("gpus", gpus, 1)
  have = part["gpus"][type]
  if type != "@no_gpu@" && have.nil?
    offered = ["@no_gpu@", *part["gpus"].keys].join(", ")
    problems << "gpu_type: expected one of #{offered} on partition #{where}, got #{type.inspect}"
  elsif type != "@no_gpu@" && count > have
    problems << "gpus: a #{where} node has #{have} #{type} GPUs, asked for #{count}"
  end
  ncores = number.call("cores", cores, 1)
  memory = number.call("memory_gb", memory_gb, 1)
  nhours = number.call("hours", hours, 1)
  problems << "cores: a #{where} node has #{part["cores"]} cores, asked for #{ncores}" if ncores > part["cores"]
  if memory > part["memory_gb"]
    problems << "memory_gb: a #{where} node has #{part["memory_gb"]} GB, asked for #{memory}"
  end
  if nhours > part["hours"]
    problems << "hours: partition #{where} allows at most #{part["hours"]} hours, asked for #{nhours}"
  end
  raise ArgumentError, "CANDLE Lab session refused: #{problems.join("; ")}" unless problems.empty?

  args = [
    "--partition=#{partition}",
    "--nodes=1",
    "--ntasks=1",
    "--cpus-per-task=#{ncores}",
    "--mem=#{memory}G",
    format("--time=%d-%02d:00:00", nhours / 24, nhours % 24),
  ]
  if count > 0
    args << (type == "@any_gpu@" ? "--gres=gpu:#{count}" : "--gres=gpu:#{type}:#{count}")
  end
-%>
---
batch_connect:
  template: "basic"
  conn_params:
    - "candle_mode"
script:
  native:
<%- args.each do |arg| -%>
    - <%= arg.to_json %>
<%- end -%>
"""

BEFORE = """\
# Open OnDemand sources this file first in the session's job, then starts script.sh.
# Generated from site profile '@site@' by `candle-lab ondemand build`: edit the profile
# and regenerate rather than this file.
<%- require "shellwords" -%>

# The form's choices, shell-quoted: nothing typed into the form is ever run.
export candle_mode=<%= context.mode.to_s.shellescape %>
export candle_partition=<%= context.partition.to_s.shellescape %>
export candle_gpu_type=<%= context.gpu_type.to_s.shellescape %>
export candle_gpus=<%= context.gpus.to_s.shellescape %>
export candle_cores=<%= context.cores.to_s.shellescape %>
export candle_memory_gb=<%= context.memory_gb.to_s.shellescape %>
export candle_hours=<%= context.hours.to_s.shellescape %>
export candle_workdir=<%= context.working_dir.to_s.shellescape %>
case "${candle_workdir}" in
  "" | "~") candle_workdir="${HOME}" ;;
  "~/"*) candle_workdir="${HOME}/${candle_workdir#"~/"}" ;;
esac
export candle_session_dir="${PWD}"

# Site set-up (site profile '@site@')
@env_setup@
export candle_python="${CANDLE_LAB_PYTHON:-@python@}"

# Refuse choices outside the site profile before anything starts.
if ! "${candle_python}" -m candle_lab.cli ondemand check --site "${candle_session_dir}/site_profile.yaml" \\
    mode="${candle_mode}" partition="${candle_partition}" gpu_type="${candle_gpu_type}" gpus="${candle_gpus}" \\
    cores="${candle_cores}" memory_gb="${candle_memory_gb}" hours="${candle_hours}" working_dir="${candle_workdir}"
then
  echo "CANDLE Lab: this session was refused and nothing was started (see the message above)." >&2
  exit 1
fi

# Where the portal connects: this node, a free port, a password for this session only.
export host="${host:-$(hostname)}"
export port="$(find_port "${host}")"
export password="$(create_passwd 24)"

# Experiments started from this session run their driver as a SLURM job of its own: they
# keep running, and submitting their worker jobs, after the session ends.
export CANDLE_LAB_DRIVER_JOB=1
"""

SCRIPT = """\
#!/usr/bin/env bash
# Open OnDemand starts this after before.sh (which exported candle_*, host, port and
# password); it runs for the whole session. Generated from site profile '@site@' by
# `candle-lab ondemand build`: regenerate rather than edit.
set -euo pipefail
cd "${candle_workdir}"
<%- if context.mode.to_s == "jupyterlab" -%>
# JupyterLab behind the portal's /node/<host>/<port>/ proxy. Its token is the session's
# password, passed in the environment (a command line is visible to everyone in ps).
export JUPYTER_TOKEN="${password}"
exec "${candle_python}" -m jupyter lab --no-browser --ip=0.0.0.0 --port="${port}" \\
  --ServerApp.port_retries=0 --ServerApp.base_url="/node/${host}/${port}/" \\
  --ServerApp.root_dir="${candle_workdir}" --config="${candle_session_dir}/jupyter_config.py"
<%- else -%>
# The CANDLE Lab dashboard behind the portal's /node/<host>/<port>/ proxy: --prefix for the
# URLs it serves, --root-path so that the redirect after login stays inside the app.
export CANDLE_LAB_PASSWORD="${password}"
exec "${candle_python}" -m candle_lab.cli dashboard --address 0.0.0.0 --port "${port}" \\
  --prefix "/node/${host}/${port}" --root-path "/node/${host}/${port}/"
<%- end -%>
"""

AFTER = """\
# Open OnDemand sources this after starting script.sh: wait until the server listens.
# Generated by `candle-lab ondemand build`.
echo "Waiting for the ${candle_mode} to listen on ${host}:${port}..."
if wait_until_port_used "${host}:${port}" 300; then
  echo "The ${candle_mode} listens on ${host}:${port}."
else
  echo "Timed out waiting for the ${candle_mode} on ${host}:${port}; see output.log." >&2
  exit 1
fi
sleep 2
"""

JUPYTER_CONFIG = '''\
"""JupyterLab settings of the Open OnDemand session (generated by `candle-lab ondemand build`)."""

from jupyter_server.auth.login import LoginFormHandler


class PortalLoginHandler(LoginFormHandler):
    """The portal's Connect button posts the session's password from the portal's page,
    which cannot carry Jupyter's XSRF cookie: the login form alone skips that check.
    Everything after the login keeps Jupyter's XSRF protection."""

    def check_xsrf_cookie(self) -> None:
        return None


c.IdentityProvider.login_handler_class = PortalLoginHandler  # noqa: F821 (c: Jupyter's config object)
'''

VIEW = """\
<%-
  # Open OnDemand shows this once the session runs: a button that posts the session's
  # password to the server's login page through the portal's /node/<host>/<port>/ proxy.
  # Generated by `candle-lab ondemand build`.
  require "erb"
  base = "/node/#{host}/#{port}"
  jupyter = candle_mode.to_s == "jupyterlab"
  action = jupyter ? "#{base}/login?next=#{ERB::Util.url_encode("#{base}/lab")}" : "#{base}/login"
-%>
<form action="<%= ERB::Util.html_escape(action) %>" method="post" target="_blank">
<%- unless jupyter -%>
  <input type="hidden" name="username" value="<%= ERB::Util.html_escape(ENV.fetch("USER", "ondemand")) %>">
<%- end -%>
  <input type="hidden" name="password" value="<%= ERB::Util.html_escape(password) %>">
  <button class="btn btn-primary" type="submit">
    <i class="fa fa-flask"></i> Connect to <%= jupyter ? "JupyterLab" : "CANDLE Lab" %>
  </button>
</form>
"""

INFO = """\
<%# Shown on the session's card. Generated by `candle-lab ondemand build`. -%>
SLURM job `<%= job_id %>` on `<%= cluster_id %>`. Experiments go to the `experiments/`
folder of the working directory. They run their own SLURM jobs and keep running after this
session ends: follow them from a new session or with `candle-lab list`, and continue a
stopped one with `candle-lab resume EXP…`.
"""

README = """\
# CANDLE Lab for Open OnDemand

A batch-connect app that starts the CANDLE Lab dashboard, or JupyterLab with the CANDLE
Lab extension, on a node of a SLURM cluster. Generated from site profile `@site@`:

```bash
candle-lab ondemand build --site @site@ --cluster @cluster@ --python @python@ DEST
```

Regenerate it after editing the profile, rather than editing these files. Install it as
a system app (`/var/www/ood/apps/sys/candle_lab`) or a sandbox app
(`~/ondemand/dev/candle_lab`); `cluster` in `form.yml` names the OnDemand cluster
(`/etc/ood/config/clusters.d/@cluster@.yml`). The nodes need candle_lab installed for
`@python@` (or `$CANDLE_LAB_PYTHON` set by the site), and OnDemand's dynamic forms
(`OOD_BC_DYNAMIC_JS=true`) to offer only the GPU types of the chosen partition.
"""


def app_files(options: AppOptions) -> list[AppFile]:
    """Every file of the app, from the profile."""
    profile = options.profile
    limits = {p.name: p.as_json() for p in partition_limits(profile)}
    common = {"site": options.site, "cluster": options.cluster, "python": options.python}
    env_setup = "\n".join(profile.env_setup) or "# (none)"
    submit = _fill(
        SUBMIT,
        limits_json=json.dumps(limits, separators=(",", ":")),
        modes_json=json.dumps(list(MODES)),
        safe_path=SAFE_PATH.pattern.replace("^", r"\A").replace("$", r"\z").replace("/", r"\/"),
        safe_path_text=SAFE_PATH_TEXT,
        no_gpu=NO_GPU,
        any_gpu=ANY_GPU,
        site=options.site,
    )
    profile_text = (
        f"# Site profile {options.site!r}, copied by `candle-lab ondemand build`: the session checks its\n"
        "# choices against it. Edit the original and regenerate.\n" + options.profile_text
    )
    return [
        AppFile("README.md", _fill(README, **common)),
        AppFile("manifest.yml", _fill(MANIFEST, site=options.site, cluster=options.cluster)),
        AppFile("form.yml", form_yml(options)),
        AppFile("submit.yml.erb", submit),
        AppFile("view.html.erb", VIEW),
        AppFile("info.md.erb", INFO),
        AppFile("template/before.sh.erb", _fill(BEFORE, env_setup=env_setup, **common), EXECUTABLE),
        AppFile("template/script.sh.erb", _fill(SCRIPT, site=options.site), EXECUTABLE),
        AppFile("template/after.sh", AFTER, EXECUTABLE),
        AppFile("template/jupyter_config.py", JUPYTER_CONFIG),
        AppFile("template/site_profile.yaml", profile_text),
    ]


def build_app(site: str, dest: str | Path, *, cluster: str | None = None, python: str | None = None) -> list[Path]:
    """Write the app for site profile ``site`` into ``dest``; returns the files written.
    Files of an earlier build that the app no longer has are left alone."""
    options = app_options(site, cluster, python)
    root = Path(dest)
    written = []
    for item in app_files(options):
        path = root / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(item.text, encoding="utf-8")
        path.chmod(item.mode)
        written.append(path)
    log.info("Open OnDemand app for site %s (cluster %s) written to %s", site, options.cluster, root)
    return written


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["partition=gpu", "hours=2"]`` -> ``{"partition": "gpu", "hours": "2"}``."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError.one("", expected_got("FIELD=VALUE", item))
        values[name] = value
    return values
