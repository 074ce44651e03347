"""The app's files, generated from a site profile by :func:`build_app`.

The files are the templates of ``templates/`` (laid out as the app is) rendered with
:class:`AppTemplate`, whose placeholders are ``@{name}``: the templates are bash, Ruby and
ERB (which OnDemand renders in its turn), full of ``$``, braces and ``<% %>``. The two
YAML files whose content comes from the profile (``form.yml``, ``manifest.yml``) are
data written by PyYAML's safe dumper.
"""

from __future__ import annotations

import json
import logging
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from candle_lab.clusters.profiles import (
    ANY_GPU,
    SiteProfile,
    available_profiles,
    load_profile,
    memory_bytes,
    profile_dirs,
    walltime_seconds,
)
from candle_lab.errors import SpecError, expected_got
from candle_lab.ondemand.form import FIELDS, MODES, NO_GPU, SAFE_PATH, SAFE_PATH_TEXT, partition_limits

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

APP_NAME = "CANDLE Lab"
EXECUTABLE = 0o755
REGULAR = 0o644
# The app's files made from templates/: app path -> template (the same path in templates/,
# but for the Python file, which is no module of this package for mypy and ruff).
TEMPLATE_FILES = {
    "README.md": "README.md",
    "submit.yml.erb": "submit.yml.erb",
    "view.html.erb": "view.html.erb",
    "info.md.erb": "info.md.erb",
    "template/before.sh.erb": "template/before.sh.erb",
    "template/script.sh.erb": "template/script.sh.erb",
    "template/after.sh": "template/after.sh",
    "template/jupyter_config.py": "template/jupyter_config.py.in",
}
EXECUTABLES = frozenset({"template/before.sh.erb", "template/script.sh.erb", "template/after.sh"})
MANIFEST_DESCRIPTION = """\
Hyperparameter optimization of cancer deep-learning models: the CANDLE Lab dashboard,
or JupyterLab with the CANDLE Lab extension, on a node of {cluster}. Experiments
started from the session run their own SLURM jobs and keep running after it ends.
"""


# ----------------------------------------------------------------------------- templates
class AppTemplate(string.Template):
    """A template of the app: ``@{name}`` is a placeholder and ``@@`` a literal ``@``; any
    other ``@`` is an error (no unbraced ``@name`` form: ``$``, ``{`` and ``#{}`` belong to
    the bash and Ruby of the files)."""

    delimiter = "@"
    idpattern = r"(?!)"  # never matches: placeholders are braced only
    braceidpattern = r"[a-z_][a-z0-9_]*"

    def placeholders(self) -> set[str]:
        return {m.group("braced") for m in self.pattern.finditer(self.template) if m.group("braced")}


def template_root() -> Traversable:
    """The folder of the app's templates (package data of :mod:`candle_lab.ondemand`)."""
    return resources.files("candle_lab.ondemand") / "templates"


def template_text(name: str) -> str:
    """The text of the template ``name`` (a path in ``templates/``: ``template/after.sh``)."""
    item = template_root()
    for part in name.split("/"):
        item = item / part
    return item.read_text(encoding="utf-8")


def render_template(name: str, **values: str) -> str:
    """Template ``name`` with its placeholders filled: every one of them, with exactly
    the values given (a missing or unused value is a mistake in the caller)."""
    template = AppTemplate(template_text(name))
    wanted = template.placeholders()
    if wanted != set(values):
        missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
        raise ValueError(f"Open OnDemand template {name}: values missing {missing}, values unused {unused}")
    return template.substitute(values)


# ----------------------------------------------------------------------------- YAML
class AppYamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper (standard YAML tags only), laid out for the people who read the
    app: sequences indented under their key, text of several lines as literal blocks,
    tuples (the form's options) as one-line flow sequences."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


def _represent_row(dumper: yaml.SafeDumper, row: tuple[Any, ...]) -> yaml.SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", row, flow_style=True)


AppYamlDumper.add_representer(str, _represent_text)
AppYamlDumper.add_representer(tuple, _represent_row)


def yaml_text(data: dict[str, Any], header: str) -> str:
    """``data`` as a YAML document after the comment lines ``header``."""
    body = yaml.dump(data, Dumper=AppYamlDumper, sort_keys=False, allow_unicode=True, width=4096, explicit_start=True)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


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


def _token(value: str) -> str:
    """A value as OnDemand's dynamic-form directives spell it (``data-option-for-partition-<token>``)."""
    return value.lower().replace("_", "-")


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


def form_data(options: AppOptions) -> dict[str, Any]:
    """The form: choices and limits from the profile, with OnDemand's dynamic directives
    (GPU types shown only for partitions that have them; hours, cores, memory and GPUs
    capped per partition)."""
    limits = partition_limits(options.profile)
    default = limits[0]
    gpu_types: dict[str, dict[str, int]] = {}  # type -> partition -> GPUs per node
    for part in limits:
        for gpu, count in part.gpus:
            gpu_types.setdefault(gpu, {})[part.name] = count
    partitions = []
    for part in limits:
        gpus = ", ".join(f"{count} {gpu}" for gpu, count in part.gpus)
        label = f"{part.name}: {part.cores} cores, {part.memory_gb} GB, up to {part.max_hours} h" + (
            f", GPUs {gpus}" if gpus else ""
        )
        data = {"data-max-hours": part.max_hours, "data-max-cores": part.cores, "data-max-memory-gb": part.memory_gb}
        partitions.append((label, part.name, data))
    gpu_options: list[tuple[str, str, dict[str, Any]]] = [("no GPU", NO_GPU, {"data-hide-gpus": True})]
    for gpu, where in gpu_types.items():
        hidden = {f"data-option-for-partition-{_token(p.name)}": False for p in limits if p.name not in where}
        caps = {f"data-max-gpus-for-partition-{_token(p)}": n for p, n in where.items()}
        gpu_options.append(("any GPU" if gpu == ANY_GPU else gpu, gpu, {**hidden, "data-hide-gpus": False, **caps}))
    most_gpus = max((n for where in gpu_types.values() for n in where.values()), default=1)
    memory = _default_gb(options.profile.defaults.get("memory"), 4, min(4, default.memory_gb))
    hours = _default_hours(options.profile.defaults.get("walltime"), 4, default.max_hours)
    attributes: dict[str, dict[str, Any]] = {
        "mode": {
            "widget": "select",
            "label": "Start",
            "options": [(label, value) for value, label in MODES.items()],
            "help": "The dashboard designs, runs and watches HPO experiments; JupyterLab opens notebooks\n"
            "with the CANDLE Lab panels. Experiments started from either keep running after\n"
            "this session ends.\n",
        },
        "working_dir": {
            "widget": "text_field",
            "label": "Working directory",
            "value": "",
            "help": "Where the session starts; experiments go to its `experiments/` folder.\n"
            "Empty: your home directory.\n",
        },
        "partition": {"widget": "select", "label": "Partition", "options": partitions},
        "gpu_type": {
            "widget": "select",
            "label": "GPU type",
            "options": gpu_options,
            "help": "Only the GPU types of the chosen partition are offered.",
        },
        "gpus": {"widget": "number_field", "label": "GPUs", "value": 1, "min": 1, "max": most_gpus},
        "cores": {
            "widget": "number_field",
            "label": "CPU cores",
            "value": 1,
            "min": 1,
            "max": max(p.cores for p in limits),
            "help": "The dashboard needs one; the experiments' workers are SLURM jobs of their own.",
        },
        "memory_gb": {
            "widget": "number_field",
            "label": "Memory (GB)",
            "value": memory,
            "min": 1,
            "max": max(p.memory_gb for p in limits),
        },
        "hours": {
            "widget": "number_field",
            "label": "Hours",
            "value": hours,
            "min": 1,
            "max": max(p.max_hours for p in limits),
        },
    }
    return {"cluster": options.cluster, "form": list(FIELDS), "attributes": attributes}


def form_yml(options: AppOptions) -> str:
    """``form.yml``: :func:`form_data` as YAML."""
    header = (
        f"Open OnDemand form of the {APP_NAME} app, generated from site profile {options.site!r}\n"
        f"by `candle-lab ondemand build --site {options.site}`: edit the profile and regenerate."
    )
    return yaml_text(form_data(options), header)


def manifest_yml(options: AppOptions) -> str:
    """``manifest.yml``: the app as the portal lists it."""
    manifest = {
        "name": APP_NAME,
        "category": "Interactive Apps",
        "subcategory": "Machine Learning",
        "role": "batch_connect",
        "icon": "fa://flask",
        "description": MANIFEST_DESCRIPTION.format(cluster=options.cluster),
    }
    header = f"Generated from site profile '{options.site}' by `candle-lab ondemand build`: regenerate, do not edit."
    return yaml_text(manifest, header)


def template_values(options: AppOptions) -> dict[str, dict[str, str]]:
    """What fills each template's placeholders."""
    profile = options.profile
    common = {"site": options.site, "cluster": options.cluster, "python": options.python}
    limits = {p.name: p.as_json() for p in partition_limits(profile)}
    submit = {
        "limits_json": json.dumps(limits, separators=(",", ":")),
        "modes_json": json.dumps(list(MODES)),
        "safe_path": SAFE_PATH.pattern.replace("^", r"\A").replace("$", r"\z").replace("/", r"\/"),
        "safe_path_text": SAFE_PATH_TEXT,
        "no_gpu": NO_GPU,
        "any_gpu": ANY_GPU,
        "site": options.site,
    }
    before = {"env_setup": "\n".join(profile.env_setup) or "# (none)", "site": options.site, "python": options.python}
    return {
        "README.md": common,
        "submit.yml.erb": submit,
        "template/before.sh.erb": before,
        "template/script.sh.erb": {"site": options.site},
    }


def app_files(options: AppOptions) -> list[AppFile]:
    """Every file of the app, from the profile."""
    values = template_values(options)
    rendered = {}
    for path, name in TEMPLATE_FILES.items():
        mode = EXECUTABLE if path in EXECUTABLES else REGULAR
        rendered[path] = AppFile(path, render_template(name, **values.get(path, {})), mode)
    profile_text = (
        f"# Site profile {options.site!r}, copied by `candle-lab ondemand build`: the session checks its\n"
        "# choices against it. Edit the original and regenerate.\n" + options.profile_text
    )
    return [
        rendered["README.md"],
        AppFile("manifest.yml", manifest_yml(options)),
        AppFile("form.yml", form_yml(options)),
        rendered["submit.yml.erb"],
        rendered["view.html.erb"],
        rendered["info.md.erb"],
        rendered["template/before.sh.erb"],
        rendered["template/script.sh.erb"],
        rendered["template/after.sh"],
        rendered["template/jupyter_config.py"],
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
