"""The Jupyter kernelspec and the Apptainer recipe (Apptainer itself is not on CI machines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from candle_lab.cli import main


def test_kernel_install_writes_a_working_kernelspec(tmp_path: Path) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/candle-lab/kernel.json").read_text())
    assert spec["display_name"] == "CANDLE Lab (TensorFlow)" and spec["language"] == "python"
    assert spec["argv"][0] == sys.executable and spec["argv"][-2:] == ["-f", "{connection_file}"]
    # the interpreter it names can start the kernel's launcher module's imports
    result = subprocess.run([spec["argv"][0], "-c", "import candle_lab"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_kernel_in_a_container(tmp_path: Path) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--container", "/images/candle_lab.sif"]) == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/candle-lab/kernel.json").read_text())
    assert spec["argv"][:5] == ["apptainer", "exec", "--nv", "/images/candle_lab.sif", "python3"]
    assert spec["argv"][5:] == ["-m", "ipykernel_launcher", "-f", "{connection_file}"]


def test_apptainer_recipe_builds_the_runtime() -> None:
    text = (REPO / "kernels" / "candle_lab.def").read_text()
    header = dict(line.split(":", 1) for line in text.splitlines() if line.startswith(("Bootstrap:", "From:")))
    assert header["Bootstrap"].strip() == "docker" and "tensorflow" in header["From"]
    sections = {line.split()[0] for line in text.splitlines() if line.startswith("%")}
    assert {"%files", "%post", "%environment", "%runscript", "%test"} <= sections
    assert '"/opt/candle_lab[keras,slurm]"' in text and "ipykernel" in text
    for path in ("pyproject.toml", "candle_lab", "site_profiles", "gallery"):
        assert (REPO / path).exists()  # everything %files copies is in the repository


def test_job_script_command(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "model: {ref: 'm:f'}\nspace: [{name: x, type: real, low: 0, high: 1}]\nbudget: {max_trials: 2}\n"
        "compute: {profile: lab, gpus: 1, memory: 2GB}\n"
    )
    assert main(["job-script", str(spec)]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --mem=2G" in script and "--resources GPU=1" in script
