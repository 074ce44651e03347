"""The Open OnDemand app (extensions/ondemand/): generated from site profiles, its ERB
templates rendered by Ruby (tests/ood_render.rb stands in for the portal), its shell files
checked by shellcheck, and a session
run for real on the single-node SLURM (scripts/slurm-up): the job composed the way
OnDemand's basic template composes it, the dashboard behind the /node/<host>/<port>/
prefix, logged in with the generated password from the rendered view, an experiment
submitted from it that keeps running after the session's job is cancelled."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, TESTS

from candle_lab import api
from candle_lab.clusters.profiles import load_profile, memory_bytes, walltime_seconds
from candle_lab.errors import SpecError
from candle_lab.ondemand import app_files, app_options, build_app, check_form, render_template
from candle_lab.ondemand.app import AppTemplate

APP = REPO / "extensions" / "ondemand"
RENDER = TESTS / "ood_render.rb"
SHOTS = REPO / "test-artifacts" / "screenshots"
ERB_FILES = ["submit.yml.erb", "view.html.erb", "info.md.erb", "template/before.sh.erb", "template/script.sh.erb"]
SHELL_FILES = ["template/after.sh", "template/before.sh.erb", "template/script.sh.erb"]

# A valid choice on the biowulf profile; cases change some of its fields.
BIOWULF = {
    "mode": "dashboard", "working_dir": "", "partition": "gpu", "gpu_type": "v100", "gpus": "2",
    "cores": "1", "memory_gb": "8", "hours": "30",
}
INVALID = {  # form values -> (field named, text of the message)
    "gpu-type-not-on-partition": ({"partition": "gpu", "gpu_type": "h100"}, "gpu_type", "'h100'"),
    "cpu-partition-has-no-gpu": ({"partition": "norm", "gpu_type": "v100"}, "gpu", "norm"),
    "hours-over-the-limit": ({"hours": "300"}, "hours", "300"),
    "metacharacters-in-working-dir": ({"working_dir": "/data/x; touch PWNED"}, "working_dir", "touch PWNED"),
}

# Stand-ins for the helpers OnDemand's batch script gives before.sh/after.sh, and the job
# that script is: source before.sh, start script.sh, source after.sh, write the
# connection file, wait for script.sh.
OOD_JOB = """\
#!/bin/bash
find_port() {{ "{python}" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }}
create_passwd() {{ tr -dc 'A-Za-z0-9' </dev/urandom | head -c "${{1:-32}}"; }}
port_used() {{ (exec 3<>"/dev/tcp/${{1%:*}}/${{1##*:}}") 2>/dev/null; }}
wait_until_port_used() {{
  local i; for ((i = 0; i < ${{2:-60}} * 4; i++)); do port_used "$1" && return 0; sleep 0.25; done; return 1
}}
cd "{session}"
host="$(hostname)"
source ./before.sh
./script.sh &
script_pid=$!
source ./after.sh
(umask 077; printf 'host: %s\\nport: %s\\npassword: %s\\ncandle_mode: %s\\n' \\
  "$host" "$port" "$password" "$candle_mode" > connection.yml.part && mv connection.yml.part connection.yml)
wait "$script_pid"
"""


# ------------------------------------------------------------------ fixtures and helpers
@pytest.fixture(scope="module")
def ruby() -> str:
    """Debian's Ruby (scripts/ruby-up installs it when missing)."""
    if not shutil.which("ruby"):
        result = subprocess.run([str(REPO / "scripts" / "ruby-up")], capture_output=True, text=True)
        assert result.returncode == 0, f"could not install ruby:\n{result.stderr}"
    found = shutil.which("ruby")
    assert found, "ruby is not installed and scripts/ruby-up could not install it"
    return found


@pytest.fixture(scope="module")
def shellcheck() -> str:
    """Debian's ShellCheck (scripts/ruby-up installs it when missing)."""
    if not shutil.which("shellcheck"):
        result = subprocess.run([str(REPO / "scripts" / "ruby-up")], capture_output=True, text=True)
        assert result.returncode == 0, f"could not install shellcheck:\n{result.stderr}"
    found = shutil.which("shellcheck")
    assert found, "shellcheck is not installed and scripts/ruby-up could not install it"
    return found


def render(ruby: str, app: Path, name: str, context: dict[str, str], **values: dict[str, str]) -> str:
    """An ERB file of the app rendered as the portal renders it."""
    result = subprocess.run(
        [ruby, str(RENDER), str(app / name), json.dumps({"context": context, **values})],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def refusal(ruby: str, app: Path, name: str, context: dict[str, str]) -> str:
    result = subprocess.run(
        [ruby, str(RENDER), str(app / name), json.dumps({"context": context})], capture_output=True, text=True
    )
    assert result.returncode != 0, f"{name} rendered for {context}:\n{result.stdout}"
    return result.stderr


def native_args(ruby: str, app: Path, context: dict[str, str]) -> list[str]:
    submit = yaml.safe_load(render(ruby, app, "submit.yml.erb", context))
    assert submit["batch_connect"] == {"template": "basic", "conn_params": ["candle_mode"]}
    return [str(a) for a in submit["script"]["native"]]


def stage(ruby: str, app: Path, context: dict[str, str], session: Path) -> Path:
    """What the portal does at launch: copy template/ to the session folder, render its
    ERB files and drop their .erb suffix (execute bits kept)."""
    shutil.copytree(app / "template", session)
    for erb in sorted(session.glob("*.erb")):
        target = erb.with_suffix("")
        target.write_text(render(ruby, session, erb.name, context))
        target.chmod(erb.stat().st_mode)
        erb.unlink()
    return session


def ood_job(session: Path) -> Path:
    job = session.parent / "ood_job.sh"
    job.write_text(OOD_JOB.format(python=sys.executable, session=session))
    job.chmod(0o755)
    return job


def visible_options(form: dict[str, Any], field: str, other: str, value: str) -> list[str]:
    """The options of ``field`` that OnDemand's dynamic form shows when ``other`` is
    ``value`` (``data-option-for-<other>-<value>: false`` hides an option)."""
    key = f"data-option-for-{other.replace('_', '-')}-{value.lower().replace('_', '-')}"
    shown = []
    for option in form["attributes"][field]["options"]:
        data = next((o for o in option if isinstance(o, dict)), {})
        if data.get(key) is not False:
            shown.append(option[1])
    return shown


def option_data(form: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    option = next(o for o in form["attributes"][field]["options"] if o[1] == value)
    return next((o for o in option if isinstance(o, dict)), {})


# ------------------------------------------------------------------ the generated app
def test_checked_in_app_is_the_generated_one(tmp_path: Path) -> None:
    written = build_app("biowulf", tmp_path / "app")
    built = {p.relative_to(tmp_path / "app").as_posix() for p in written}
    checked_in = {p.relative_to(APP).as_posix() for p in APP.rglob("*") if p.is_file()}
    assert built == checked_in, "regenerate: candle-lab ondemand build --site biowulf extensions/ondemand"
    for name in sorted(built):
        assert (APP / name).read_text() == (tmp_path / "app" / name).read_text(), f"{name} differs: regenerate"
        executable = bool((tmp_path / "app" / name).stat().st_mode & stat.S_IXUSR)
        assert bool((APP / name).stat().st_mode & stat.S_IXUSR) == executable, f"{name}: execute bit"
    assert {n for n in built if (tmp_path / "app" / n).stat().st_mode & stat.S_IXUSR} == {
        "template/before.sh.erb", "template/script.sh.erb", "template/after.sh",
    }
    for name in ("manifest.yml", "form.yml", "template/site_profile.yaml"):
        assert yaml.safe_load((APP / name).read_text()), name
    assert load_profile(str(APP / "template" / "site_profile.yaml")) == load_profile("biowulf")


@pytest.mark.parametrize("site", ["biowulf", "lab", "generic-slurm"])
def test_yaml_files_read_the_same_in_ruby(ruby: str, site: str, tmp_path: Path) -> None:
    """form.yml and manifest.yml as the portal's YAML (Ruby's) reads them: what Python reads."""
    build_app(site, tmp_path)
    for name in ("form.yml", "manifest.yml"):
        result = subprocess.run(
            [ruby, "-ryaml", "-rjson", "-e", "print JSON.generate(YAML.safe_load(File.read(ARGV[0])))",
             str(tmp_path / name)],
            capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == yaml.safe_load((tmp_path / name).read_text()), name


def test_templates_fill_every_placeholder() -> None:
    """``@{name}`` placeholders only (the files' own $, braces and ERB pass through); a
    missing or unused value, or a stray @, is an error rather than a broken app."""
    text = 'echo "${HOME}" <%= x %> #{ruby} user@@host @{site}'
    assert AppTemplate(text).substitute(site="lab") == 'echo "${HOME}" <%= x %> #{ruby} user@host lab'
    with pytest.raises(ValueError):
        AppTemplate("user@host").substitute()
    with pytest.raises(ValueError, match=r"missing \['python'\]"):
        render_template("README.md", site="lab", cluster="lab")
    with pytest.raises(ValueError, match=r"unused \['site'\]"):
        render_template("template/after.sh", site="lab")


@pytest.mark.parametrize("site", ["biowulf", "lab", "generic-slurm"])
def test_form_offers_only_the_profiles_choices(site: str) -> None:
    options = app_options(site)
    form = yaml.safe_load(next(f.text for f in app_files(options) if f.path == "form.yml"))
    profile = options.profile
    assert form["cluster"] == profile.name
    assert form["form"] == ["mode", "working_dir", "partition", "gpu_type", "gpus", "cores", "memory_gb", "hours"]
    assert [o[1] for o in form["attributes"]["mode"]["options"]] == ["dashboard", "jupyterlab"]
    partitions = [o[1] for o in form["attributes"]["partition"]["options"]]
    assert sorted(partitions) == sorted(profile.partitions) and partitions[0] == profile.cpu_partition
    for name, part in profile.partitions.items():
        # Only the GPU types this partition has (and "none") are offered once it is chosen.
        assert visible_options(form, "gpu_type", "partition", name) == ["none", *part.gpus]
        data = option_data(form, "partition", name)
        assert data["data-max-cores"] == part.cores
        assert data["data-max-hours"] == walltime_seconds(part.max_walltime) // 3600
        assert data["data-max-memory-gb"] == memory_bytes(part.memory) >> 30
        for gpu, count in part.gpus.items():
            assert option_data(form, "gpu_type", gpu)[f"data-max-gpus-for-partition-{name}"] == count
    assert option_data(form, "gpu_type", "none") == {"data-hide-gpus": True}  # no GPU count without a type


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({}, ["--partition=gpu", "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=8G",
              "--time=1-06:00:00", "--gres=gpu:v100:2"]),
        ({"partition": "norm", "gpu_type": "none", "cores": "4", "memory_gb": "32", "hours": "2"},
         ["--partition=norm", "--nodes=1", "--ntasks=1", "--cpus-per-task=4", "--mem=32G", "--time=0-02:00:00"]),
        ({"mode": "jupyterlab", "gpu_type": "a100", "gpus": "4", "hours": "240", "memory_gb": "240"},
         ["--partition=gpu", "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=240G",
          "--time=10-00:00:00", "--gres=gpu:a100:4"]),
        ({"gpu_type": "", "gpus": "3"},  # no type chosen: no GPU, whatever the (hidden) count says
         ["--partition=gpu", "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=8G", "--time=1-06:00:00"]),
    ],
)
def test_submit_yml_gives_the_sbatch_options(ruby: str, choice: dict[str, str], expected: list[str]) -> None:
    values = {**BIOWULF, **choice}
    assert native_args(ruby, APP, values) == expected
    assert check_form(values, load_profile("biowulf")).sbatch_args() == expected  # Ruby and Python agree


def test_untyped_gpus_of_the_lab_profile(ruby: str, tmp_path: Path) -> None:
    build_app("lab", tmp_path / "lab")
    values = {**BIOWULF, "partition": "gpu", "gpu_type": "any", "gpus": "2", "hours": "4"}
    assert native_args(ruby, tmp_path / "lab", values)[-2:] == ["--time=0-04:00:00", "--gres=gpu:2"]
    assert "hours" in refusal(ruby, tmp_path / "lab", "submit.yml.erb", {**values, "hours": "5"})


@pytest.mark.parametrize("mode", ["dashboard", "jupyterlab"])
def test_job_templates_and_view(ruby: str, mode: str) -> None:
    values = {**BIOWULF, "mode": mode, "working_dir": "~/hpo runs"}
    before = render(ruby, APP, "template/before.sh.erb", values)
    assert f"export candle_mode={mode}\n" in before
    assert "export candle_workdir=\\~/hpo\\ runs\n" in before  # shell-quoted
    assert "module load python/3.11" in before  # the profile's set-up
    assert "candle_lab.cli ondemand check --site" in before
    assert before.index("ondemand check") < before.index("find_port")  # refused before anything starts
    for line in ('port="$(find_port "${host}")"', 'password="$(create_passwd 24)"', "export port password",
                 'export host="${host:-$(hostname)}"', "export CANDLE_LAB_DRIVER_JOB=1"):
        assert line in before
    script = render(ruby, APP, "template/script.sh.erb", values)
    assert script.startswith("#!/usr/bin/env bash\n") and 'cd "${candle_workdir}"' in script
    connection = {"host": "cn0042", "port": "40123", "password": "s3cret<&>", "candle_mode": mode}
    view = render(ruby, APP, "view.html.erb", values, connection=connection)
    assert 'method="post"' in view and 'name="password" value="s3cret&lt;&amp;&gt;"' in view
    if mode == "dashboard":
        assert 'exec "${candle_python}" -m candle_lab.cli dashboard --address 0.0.0.0 --port "${port}"' in script
        assert '--prefix "/node/${host}/${port}" --root-path "/node/${host}/${port}/"' in script
        assert 'export CANDLE_LAB_PASSWORD="${password}"' in script and "jupyter" not in script
        assert 'action="/node/cn0042/40123/login"' in view and 'name="username"' in view
        assert "Connect to CANDLE Lab" in view
    else:
        assert 'exec "${candle_python}" -m jupyter lab --no-browser --ip=0.0.0.0 --port="${port}"' in script
        assert '--ServerApp.base_url="/node/${host}/${port}/"' in script
        assert 'export JUPYTER_TOKEN="${password}"' in script and "--config=" in script
        assert 'action="/node/cn0042/40123/login?next=%2Fnode%2Fcn0042%2F40123%2Flab"' in view
        assert "username" not in view and "Connect to JupyterLab" in view
    info = render(ruby, APP, "info.md.erb", values, card={"job_id": "4242", "cluster_id": "biowulf"})
    assert "SLURM job `4242` on `biowulf`" in info


@pytest.mark.parametrize("site", ["biowulf", "lab", "generic-slurm"])
def test_shell_files_pass_shellcheck(ruby: str, shellcheck: str, site: str, tmp_path: Path) -> None:
    """The app's shell files as the session's job gets them: staged and rendered by the
    portal's ERB for each mode (a plain and a hostile working directory), the profile's
    set-up lines included. Their shellcheck directives say which shell sources them."""
    app = tmp_path / "app"
    build_app(site, app)
    shell = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.name.endswith((".sh", ".sh.erb")))
    assert shell == SHELL_FILES  # none left unchecked
    profile = load_profile(site)
    base = {**BIOWULF, "partition": profile.cpu_partition or next(iter(profile.partitions)), "gpu_type": "none"}
    for mode, workdir in (("dashboard", "~/hpo runs"), ("jupyterlab", "/data/x; touch 'PWNED' $(id)")):
        session = stage(ruby, app, {**base, "mode": mode, "working_dir": workdir}, tmp_path / mode)
        files = [str(session / Path(name).name.removesuffix(".erb")) for name in SHELL_FILES]
        result = subprocess.run([shellcheck, *files], capture_output=True, text=True)
        assert result.returncode == 0, f"{site}, {mode}:\n{result.stdout}{result.stderr}"


# ------------------------------------------------------------------ invalid choices
@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_choices_are_refused_before_submission(ruby: str, case: str, tmp_path: Path) -> None:
    change, field, text = INVALID[case]
    values = {**BIOWULF, **change}
    # 1. The Python check (what the job runs first), with the field named.
    with pytest.raises(SpecError) as info:
        check_form(values, load_profile("biowulf"))
    assert any(f.startswith(field) and text in m + f for f, m in info.value.problems), info.value.problems
    # 2. `candle-lab ondemand check`: non-zero exit and a clear message.
    args = [f"{k}={v}" for k, v in values.items()]
    result = subprocess.run([sys.executable, "-m", "candle_lab.cli", "ondemand", "check", "--site", "biowulf", *args],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "invalid Open OnDemand session" in result.stderr and field in result.stderr
    # 3. submit.yml.erb refuses to render: the portal shows the message and submits nothing.
    message = refusal(ruby, APP, "submit.yml.erb", values)
    assert "CANDLE Lab session refused" in message and f"{field}" in message and text.strip("'") in message
    # 4. The form does not offer it.
    form = yaml.safe_load((APP / "form.yml").read_text())
    if field.startswith("gpu"):
        assert values["gpu_type"] not in visible_options(form, "gpu_type", "partition", values["partition"])
    elif field == "hours":
        assert option_data(form, "partition", values["partition"])["data-max-hours"] < int(values["hours"])
    else:  # a text field: quoted in before.sh, and the job stops at the check (next test)
        before = render(ruby, APP, "template/before.sh.erb", values)
        assert "export candle_workdir=/data/x\\;\\ touch\\ PWNED\n" in before


def test_the_job_refuses_a_bad_choice_before_starting_anything(ruby: str, tmp_path: Path) -> None:
    """before.sh, run as the portal's job runs it, with a working directory that tries to
    run a command: the check stops the job before any server starts; nothing is run."""
    app = tmp_path / "app"
    build_app("lab", app, python=sys.executable)
    marker = tmp_path / "PWNED"
    values = {**BIOWULF, "partition": "cpu", "gpu_type": "none", "hours": "1", "memory_gb": "1",
              "working_dir": f"{tmp_path}; touch {marker}"}
    session = stage(ruby, app, values, tmp_path / "session")
    result = subprocess.run([str(ood_job(session))], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "working_dir: expected a directory path" in result.stderr and "nothing was started" in result.stderr
    assert not marker.exists() and not (session / "connection.yml").exists()
    # A good choice gets through the check, with a port and password for the session.
    values["working_dir"] = str(tmp_path)
    good = stage(ruby, app, values, tmp_path / "good")
    probe = good / "probe.sh"
    probe.write_text(ood_job(good).read_text().split("./script.sh &")[0] + 'echo "port=$port password=$password"\n')
    probe.chmod(0o755)
    result = subprocess.run([str(probe)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    port, password = (part.split("=", 1)[1] for part in result.stdout.split()[-2:])
    assert int(port) > 0 and len(password) == 24 and password.isalnum()


def test_jupyterlab_session_logs_in_from_the_view(ruby: str, tmp_path: Path) -> None:
    """JupyterLab mode, run on this machine (not through SLURM): served under the prefix,
    the view's form logs in with the session's password (Jupyter's XSRF check skipped
    for the login form only), a wrong password is refused."""
    pytest.importorskip("jupyterlab")
    app = tmp_path / "app"
    build_app("lab", app, python=sys.executable)
    values = {**BIOWULF, "mode": "jupyterlab", "partition": "cpu", "gpu_type": "none", "hours": "1",
              "memory_gb": "1", "working_dir": str(tmp_path)}
    session = stage(ruby, app, values, tmp_path / "session")
    if os.geteuid() == 0:  # CI runs as root, which Jupyter refuses unless told
        with (session / "jupyter_config.py").open("a") as config:
            config.write("c.ServerApp.allow_root = True  # noqa: F821\n")
    with (tmp_path / "output.log").open("wb") as out:
        proc = subprocess.Popen([str(ood_job(session))], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        connection = session / "connection.yml"
        _wait(lambda: connection.is_file() or proc.poll() is not None, 120, "JupyterLab", tmp_path / "output.log")
        assert connection.is_file(), (tmp_path / "output.log").read_text()
        info = yaml.safe_load(connection.read_text())
        host, port, password = str(info["host"]), int(info["port"]), str(info["password"])
        view = render(ruby, app, "view.html.erb", {},
                      connection={"host": host, "port": str(port), "password": password, "candle_mode": "jupyterlab"})
        action = view.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        opener = urllib.request.build_opener(_NoRedirect)
        for typed, expected in (("not-the-password", 401), (password, 302)):
            body = urllib.parse.urlencode({"password": typed}).encode()
            request = urllib.request.Request(f"http://{host}:{port}{action}", data=body,
                                             headers={"Origin": "https://ondemand.example.org"})
            try:
                with opener.open(request, timeout=10) as answer:
                    status, headers = answer.status, answer.headers
            except urllib.error.HTTPError as exc:
                status, headers = exc.code, exc.headers
            assert status == expected, (typed, status)
        assert headers["Location"] == f"/node/{host}/{port}/lab"
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        request = urllib.request.Request(f"http://{host}:{port}/node/{host}/{port}/api/status",
                                         headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200 and "started" in json.loads(answer.read())
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def test_drivers_of_local_experiments_stay_beside_the_session(tmp_path: Path) -> None:
    from candle_lab.clusters.slurm import submit_driver_job

    assert submit_driver_job(["true"], tmp_path / "EXP000", "local") is None


# ------------------------------------------------------------------ a session on SLURM
def _squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def _wait(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.is_file() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.3)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _login(base: str, password: str) -> tuple[int, str]:
    """POST the login form as the view does: the status and where it sends the browser."""
    opener = urllib.request.build_opener(_NoRedirect)
    body = urllib.parse.urlencode({"username": "researcher", "password": password}).encode()
    try:
        with opener.open(base + "login", data=body, timeout=10) as answer:
            return answer.status, answer.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


@pytest.fixture
def session_job(ruby: str, slurm: None, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The portal's job for the dashboard on the lab profile's CPU partition: one core and
    little memory, so that an experiment's jobs fit beside it on the 2-CPU node."""
    pytest.importorskip("panel")
    app = tmp_path / "app"
    build_app("lab", app, python=sys.executable)
    work = tmp_path / "work"
    work.mkdir()
    values = {"mode": "dashboard", "working_dir": str(work), "partition": "cpu", "gpu_type": "none", "gpus": "1",
              "cores": "1", "memory_gb": "2", "hours": "1"}
    native = native_args(ruby, app, values)
    assert native == ["--partition=cpu", "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=2G",
                      "--time=0-01:00:00"]
    session = stage(ruby, app, values, tmp_path / "session")
    env = {k: v for k, v in os.environ.items() if k not in ("CANDLE_LAB_HOME", "CANDLE_LAB_DRIVER_JOB")}
    job = subprocess.run(
        ["sbatch", "--parsable", "--job-name=ood-candle_lab", f"--output={session}/output.log",
         f"--chdir={session}", *native, str(ood_job(session))],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip().split(";")[0]
    try:
        yield job, session, work
    finally:
        subprocess.run(["scancel", job], check=False)


def test_session_on_slurm(session_job: tuple[str, Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("playwright")
    from browser import chromium

    job, session, work = session_job
    log = session / "output.log"
    connection = session / "connection.yml"
    _wait(lambda: connection.is_file() or not _squeue(job), 120, "the session's connection file", log)
    assert connection.is_file(), log.read_text()
    info = yaml.safe_load(connection.read_text())
    host, port, password = str(info["host"]), int(info["port"]), str(info["password"])
    assert info["candle_mode"] == "dashboard" and len(password) == 24
    base = f"http://{host}:{port}/node/{host}/{port}/"  # no portal here: straight to the node

    # Behind the prefix, and only with the session's password.
    with urllib.request.urlopen(base, timeout=10) as answer:
        assert f"/node/{host}/{port}/login" in answer.geturl() and b"Bokeh.embed" not in answer.read()
    status, where = _login(base, "not-the-password")
    assert status == 302 and "error=" in where and where.startswith(f"/node/{host}/{port}/login")
    assert _login(base, password) == (302, f"/node/{host}/{port}/")  # the redirect stays inside the app

    # The portal's Connect button (the rendered view) logs in; an experiment is submitted.
    ruby = shutil.which("ruby") or "ruby"
    view = render(ruby, session.parent / "app", "view.html.erb", {},
                  connection={"host": host, "port": str(port), "password": password, "candle_mode": "dashboard"})
    space = tmp_path / "space.json"
    space.write_text(json.dumps([{"name": "x", "type": "float", "lower": 0.0, "upper": 1.0},
                                 {"name": "sleep", "type": "constant", "value": 0.2}]))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        portal = context.new_page()
        portal.goto(base + "login")  # the view's relative action resolves against the node
        portal.set_content(view)
        with context.expect_page() as opened:
            portal.get_by_role("button", name="Connect to CANDLE Lab").click()
        page = opened.value
        page.get_by_role("button", name="Submit experiment").wait_for(timeout=60_000)
        assert page.url == base

        def fill(label: str, value: str) -> None:
            box = page.get_by_label(label, exact=True)
            box.fill(value)
            box.press("Enter")

        fill("Reference (module:function or benchmark module)", "trial_models:gpu_probe")
        fill("Folder of the model", str(TESTS))
        fill("Space file (on the server)", str(space))
        page.get_by_role("button", name="Import").click()
        page.get_by_text("imported 2 parameters").wait_for(timeout=10_000)
        fill("Experiment name", "ood-session")
        fill("Metric", "objective")
        fill("Max trials", "2")
        fill("Initial points", "2")
        page.get_by_label("Site profile", exact=True).select_option("lab")
        page.get_by_label("Partition (blank: profile default)", exact=True).select_option("cpu")
        fill("Workers", "1")
        fill("Memory per worker (e.g. 8GB)", "1GB")
        fill("Walltime (HH:MM:SS)", "00:10:00")
        page.get_by_role("button", name="Submit experiment").click()
        page.locator(".experiment-id").get_by_text("EXP000").wait_for(timeout=30_000)
        page.screenshot(path=SHOTS / "ondemand-session.png", full_page=True)
        context.close()

    # The driver runs as a SLURM job of its own, not inside the session's job.
    exp = api.open_experiment("EXP000", work / "experiments")
    driver_log = exp.path / "driver.log"
    _wait(lambda: exp.meta().get("driver_pid") is not None, 90, "the experiment's driver job", driver_log)
    environ = Path(f"/proc/{exp.meta()['driver_pid']}/environ").read_bytes().split(b"\0")
    driver_job = next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"SLURM_JOB_ID="))
    assert driver_job != job and _squeue(driver_job) == "RUNNING"

    # The session ends (the portal's Delete, or its walltime): the experiment goes on.
    subprocess.run(["scancel", job], check=True)
    _wait(lambda: _squeue(job) in ("", "COMPLETING"), 30, "the end of the session's job")
    status = exp.wait(timeout=150)
    assert status.state == "completed" and status.completed == 2, (status, driver_log.read_text()[-3000:])
    worker_jobs = {str(int(t.metrics["slurm_job"])) for t in exp.records() if t.metrics}
    assert worker_jobs and job not in worker_jobs and driver_job not in worker_jobs  # trials ran on SLURM workers
    _wait(lambda: not _squeue(driver_job), 60, "the driver job to end", driver_log)
    assert all(not _squeue(w) for w in worker_jobs), "worker jobs were left in the queue"
