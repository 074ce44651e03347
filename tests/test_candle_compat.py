"""The CANDLE library compatibility subset: unchanged ``import candle`` benchmark modules
run in trials (through the engine, real TensorFlow) and standalone; CANDLE's parameter
precedence and conventions; ``get_file`` against a local HTTP server; a real CANDLE
installation is never shadowed."""

from __future__ import annotations

import ast
import hashlib
import http.server
import importlib
import io
import json
import logging
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, TESTS

import candle_lab
import candle_lab.compat.candle as candle
from candle_lab.compat import (
    NOT_PROVIDED,
    PROVIDED,
    CandleNotProvided,
    candle_in_use,
    install_candle,
    trial_parameters,
    uninstall_candle,
)
from candle_lab.errors import CandleLabError, SpecError
from candle_lab.models.candle import LIBRARY_DEFAULTS, run_candle_module

BENCH = TESTS / "candle_benchmark"


@pytest.fixture
def clean_candle(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``candle`` module and no finder before and after the test."""

    def forget() -> None:
        uninstall_candle()
        for name in [n for n in sys.modules if n == "candle" or n.startswith("candle.")]:
            del sys.modules[name]

    forget()
    yield
    forget()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ import candle


def test_import_candle_gives_the_subset_when_no_candle_is_installed(clean_candle: None) -> None:
    assert install_candle() is True
    imported = importlib.import_module("candle")
    assert imported is candle and candle_in_use()
    assert imported.__spec__ is not None and imported.__spec__.name == "candle_lab.compat.candle"
    # CANDLE's submodule names resolve to the subset's modules (one copy of each).
    from candle.file_utils import get_file  # type: ignore[import-not-found]

    assert get_file is candle.get_file
    assert sorted(candle.__all__) == sorted(PROVIDED)
    assert install_candle() is True  # idempotent


def test_a_real_candle_installation_is_never_shadowed(
    clean_candle: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "site"
    write(
        real / "candle" / "__init__.py",
        "REAL = True\n"
        "class Benchmark:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        pass\n"
        "def finalize_parameters(bmk):\n"
        "    return {'from_real': True, 'epochs': 1}\n",
    )
    bench = tmp_path / "bench"
    write(
        bench / "real_candle_bench.py",
        "import candle\n"
        "def initialize_parameters(default_model='x.txt'):\n"
        "    return candle.finalize_parameters(candle.Benchmark('.', default_model, 'keras'))\n"
        "def run(params):\n"
        "    return {'objective': 1.0, 'seen': dict(params)}\n",
    )
    monkeypatch.syspath_prepend(str(real))
    assert install_candle() is False
    import candle as imported  # type: ignore[import-not-found]

    assert getattr(imported, "REAL", False) and not candle_in_use()

    # A benchmark importing the real library runs with the adapter's own merging.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = {"kind": "candle", "ref": "real_candle_bench", "path": str(bench)}
    try:
        result = run_candle_module(model, {"epochs": 3}, run_dir, {"run_id": "RUN001"})
    finally:
        sys.modules.pop("real_candle_bench", None)
    assert result["seen"]["from_real"] is True
    assert result["seen"]["epochs"] == 3 and result["seen"]["run_id"] == "RUN001"
    assert not (run_dir / "final_params.txt").exists()


def test_a_plain_folder_named_candle_is_not_a_candle_installation(
    clean_candle: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "candle").mkdir()  # e.g. a data folder: a namespace package for Python
    monkeypatch.syspath_prepend(str(tmp_path))
    assert install_candle() is True
    assert importlib.import_module("candle") is candle


def test_names_not_provided_say_so(clean_candle: None) -> None:
    install_candle()
    imported: Any = importlib.import_module("candle")
    assert "load_csv_data" in NOT_PROVIDED
    with pytest.raises(CandleNotProvided, match=r"candle\.load_csv_data is a CANDLE library name .* not provide"):
        imported.load_csv_data  # noqa: B018
    with pytest.raises(CandleNotProvided, match="CandleCkptPyTorch") as info:
        from candle import CandleCkptPyTorch  # type: ignore[import-not-found]  # noqa: F401
    assert "candle_lib" in str(info.value) and "finalize_parameters" in str(info.value)
    assert isinstance(info.value, CandleLabError)
    with pytest.raises(CandleNotProvided, match=r"candle\.uq_utils is a CANDLE library module"):
        importlib.import_module("candle.uq_utils")
    with pytest.raises(AttributeError, match="did you mean 'finalize_parameters'"):
        imported.finalise_parameters  # noqa: B018
    assert not hasattr(imported, "not_a_candle_name")


# ------------------------------------------------------------------ parameters

DEFAULT_MODEL = """\
[Global_Params]
epochs = 5
overridden_by_default = 'default'
overridden_by_config = 'default'
overridden_by_cli = 'default'
overridden_by_search = 'default'
dense = [10, 5]
layer_names = ['a', 'b']

[Monitor_Params]
epochs = 99
timeout = 600
"""

CONFIG = """\
[Global_Params]
overridden_by_config = 'config'
overridden_by_cli = 'config'
overridden_by_search = 'config'
class_weights = 1 2.5
"""


class PrecedenceBenchmark(candle.Benchmark):
    def set_locals(self) -> None:
        self.required = {"epochs", "dense"}
        self.additional_definitions = [
            {"name": "from_definition", "type": str, "default": "definition", "help": "only defined"},
            {"name": "overridden_by_default", "type": str, "default": "definition"},
            {"name": "overridden_by_config", "type": str},
            {"name": "overridden_by_cli", "type": str},
            {"name": "overridden_by_search", "type": str},
            {"name": "class_weights", "nargs": "+", "type": float},
            {"name": "shape", "action": "list-of-lists", "type": int},
            {"name": "use_bias", "type": candle.str2bool, "default": True},
            {"name": "layer_names", "nargs": "+", "type": str},
            {"name": "norm", "type": str, "choices": ["batch", "layer", "none"], "default": "none"},
        ]


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bench"
    write(folder / "p_default_model.txt", DEFAULT_MODEL)
    write(folder / "p_config.txt", CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["p_baseline.py"])
    return folder


def benchmark(folder: Path, cls: type[candle.Benchmark] = PrecedenceBenchmark) -> candle.Benchmark:
    return cls(str(folder), "p_default_model.txt", "keras", prog="p_baseline", desc="precedence")


def read_final(folder: Path) -> dict[str, Any]:
    value = ast.literal_eval((folder / "final_params.txt").read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


def test_precedence_defaults_model_file_config_command_line_search(
    bench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["p_baseline.py", "--config_file", str(bench_dir / "p_config.txt")]
    argv += ["--overridden_by_cli", "cli", "--overridden_by_search", "cli", "--learning_rate", "0.5"]
    monkeypatch.setattr(sys, "argv", argv)
    run_dir = tmp_path / "experiments" / "EXP042" / "RUN003"
    search = {"overridden_by_search": "search", "dense": "500 100 50", "epochs": "3", "use_bias": "no"}
    run_info = {"output_dir": str(run_dir), "run_id": "RUN003", "experiment_id": "EXP042"}
    with trial_parameters(search, run_info) as trial:
        params = candle.finalize_parameters(benchmark(bench_dir))
    assert trial.finalized == [params]

    assert params["rng_seed"] == LIBRARY_DEFAULTS["rng_seed"]  # library default
    assert params["from_definition"] == "definition"  # a definition's default ...
    assert params["overridden_by_default"] == "default"  # ... below the default model file
    assert params["overridden_by_config"] == "config"
    assert params["overridden_by_cli"] == "cli"
    assert params["overridden_by_search"] == "search"
    assert params["learning_rate"] == 0.5  # typed by CANDLE's definition
    assert params["epochs"] == 3 and params["use_bias"] is False  # search strings typed
    assert params["dense"] == [500, 100, 50]  # CANDLE's list convention
    assert params["class_weights"] == [1.0, 2.5]
    assert params["timeout"] == 600  # every section is read
    assert params["config_file"] == str(bench_dir / "p_config.txt")
    assert (params["output_dir"], params["run_id"], params["experiment_id"]) == (str(run_dir), "RUN003", "EXP042")

    final = read_final(run_dir)
    assert final["dense"] == [500, 100, 50] and final["overridden_by_search"] == "search"
    assert final["data_type"] == "numpy.float32" and final["output_dir"] == str(run_dir)
    assert not (tmp_path / "Output").exists()


def test_first_occurrence_wins_and_the_default_output_layout(bench_dir: Path, tmp_path: Path) -> None:
    params = candle.finalize_parameters(benchmark(bench_dir))
    assert params["epochs"] == 5  # [Global_Params] before [Monitor_Params]
    assert params["dense"] == [10, 5] and params["use_bias"] is True
    out = tmp_path / "Output" / "EXP000" / "RUN000"
    assert params["output_dir"] == str(out)
    final = read_final(out)
    assert final["epochs"] == 5 and final["experiment_id"] == "EXP000" and final["run_id"] == "RUN000"
    assert final["overridden_by_search"] == "default"


def test_output_dir_experiment_and_run_ids_from_the_command_line(
    bench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["p.py", "--output_dir", "results", "--experiment_id", "E1", "--run_id", "R7", "--dense", "8", "4"]
    monkeypatch.setattr(sys, "argv", argv)
    params = candle.finalize_parameters(benchmark(bench_dir))
    assert params["output_dir"] == str(tmp_path / "results" / "E1" / "R7")
    assert params["dense"] == [8, 4]
    assert read_final(tmp_path / "results" / "E1" / "R7")["run_id"] == "R7"

    monkeypatch.setattr(sys, "argv", ["p.py", "--output_dir", "."])
    assert candle.finalize_parameters(benchmark(bench_dir))["output_dir"] == str(tmp_path)
    assert (tmp_path / "final_params.txt").is_file()


def test_list_conventions_from_files_command_line_and_search(
    bench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["p.py", "--shape", "1,2:3,4", "--class_weights", "0.5", "2"])
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"dense": "500 100 50"}, {"dense": [500, 100, 50]}),
        ({"dense": ["8", "4"]}, {"dense": [8, 4]}),
        ({"dense": 64}, {"dense": [64]}),
        ({"dense": [64.0, 32]}, {"dense": [64, 32]}),
        ({"dense": "[16, 8]"}, {"dense": [16, 8]}),
        ({"layer_names": "x y z"}, {"layer_names": ["x", "y", "z"]}),
        ({"conv": "32 3 1"}, {"conv": [32, 3, 1]}),
        ({"shape": "5,6:7,8"}, {"shape": [[5, 6], [7, 8]]}),
        ({}, {"shape": [[1, 2], [3, 4]], "class_weights": [0.5, 2.0]}),
    ]
    for i, (search, expected) in enumerate(cases):
        with trial_parameters(search, {"output_dir": str(tmp_path / f"run{i}")}):
            params = candle.finalize_parameters(benchmark(bench_dir))
        assert {k: params[k] for k in expected} == expected, search


def test_a_string_replacing_an_undefined_list_is_split(bench_dir: Path, tmp_path: Path) -> None:
    write(bench_dir / "p_default_model.txt", DEFAULT_MODEL + "\n[Extra]\nhidden = [3, 2]\n")
    with trial_parameters({"hidden": "30 20 10"}, {"output_dir": str(tmp_path / "run")}):
        params = candle.finalize_parameters(benchmark(bench_dir))
    assert params["hidden"] == [30, 20, 10]


def test_missing_required_parameters_name_them_and_the_file(bench_dir: Path) -> None:
    class Needy(PrecedenceBenchmark):
        def set_locals(self) -> None:
            super().set_locals()
            self.required = {"epochs", "batch_size", "n_classes"}

    with pytest.raises(SpecError) as info:
        candle.finalize_parameters(benchmark(bench_dir, Needy))
    text = str(info.value)
    assert [field for field, _ in info.value.problems] == ["batch_size", "n_classes"]
    assert "Needy" in text and str(bench_dir / "p_default_model.txt") in text and "required" in text


def test_parameter_errors_are_clear(bench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        trial_parameters({"epochs": "many"}, {"output_dir": str(tmp_path / "r1")}),
        pytest.raises(SpecError, match=r"epochs: expected a value of type int, got 'many'"),
    ):
        candle.finalize_parameters(benchmark(bench_dir))
    with (
        trial_parameters({"norm": "group"}, {"output_dir": str(tmp_path / "r2")}),
        pytest.raises(SpecError, match=r"norm: expected one of 'batch', 'layer', 'none', got 'group'"),
    ):
        candle.finalize_parameters(benchmark(bench_dir))

    class Flags(PrecedenceBenchmark):
        def set_locals(self) -> None:
            super().set_locals()
            self.additional_definitions = [{"name": "fast", "action": "store_true"}]

    with pytest.raises(SpecError, match=r"additional_definitions\[0\] \(fast\)\.action: 'store_true'.*str2bool"):
        candle.finalize_parameters(benchmark(bench_dir, Flags))

    monkeypatch.setattr(sys, "argv", ["p.py", "--config_file", "nowhere.txt"])
    with pytest.raises(SpecError, match=r"config_file: file not found: .*nowhere\.txt"):
        candle.finalize_parameters(benchmark(bench_dir))

    monkeypatch.setattr(sys, "argv", ["p.py"])
    with (
        trial_parameters({"clr_flag": True, "warmup_lr": True}, {"output_dir": str(tmp_path / "r3")}),
        pytest.raises(SpecError, match="cannot be used together"),
    ):
        candle.finalize_parameters(benchmark(bench_dir))


def test_unknown_keywords_are_warned(
    bench_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write(bench_dir / "p_default_model.txt", DEFAULT_MODEL + "\n[Extra]\nmystery_knob = 3\n")
    monkeypatch.setattr(sys, "argv", ["p.py", "--other_knob", "7"])
    with caplog.at_level(logging.WARNING, logger="candle_lab.compat"):
        params = candle.finalize_parameters(benchmark(bench_dir))
    assert params["mystery_knob"] == 3 and params["other_knob"] == 7
    text = caplog.text
    assert "mystery_knob" in text and "p_default_model.txt" in text and "other_knob" in text
    assert "overridden_by_default" not in text  # defined keywords are not warned


def test_helpers(tmp_path: Path) -> None:
    assert candle.str2bool("Yes") is True and candle.str2bool("0") is False and candle.str2bool(False) is False
    with pytest.raises(Exception, match="Boolean value expected"):
        candle.str2bool("maybe")
    target = tmp_path / "a" / "b" / "log.txt"
    candle.verify_path(str(target))
    assert target.parent.is_dir()
    defaults = candle.keras_default_config()
    assert defaults["beta_2"] == 0.999 and defaults["momentum_sgd"] == 0.0 and len(defaults) == 12
    import random

    import numpy as np

    candle.set_seed(3)
    first = (random.random(), np.random.rand())
    candle.set_seed(3)
    assert (random.random(), np.random.rand()) == first
    args = candle.ArgumentStruct(**{"epochs": 2})
    assert args.epochs == 2


def test_keras_helpers(clean_candle: None) -> None:
    install_candle()
    imported: Any = importlib.import_module("candle")
    import keras
    import numpy as np

    defaults = imported.keras_default_config()
    for name in ("sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam"):
        optimizer = imported.build_optimizer(name, 0.01, defaults)
        assert float(optimizer.learning_rate) == pytest.approx(0.01)
    with pytest.raises(SpecError, match="optimizer: expected one of sgd"):
        imported.build_optimizer("lbfgs", 0.01, defaults)
    for name in ("constant", "uniform", "normal", "glorot_uniform", "glorot_normal", "lecun_uniform", "he_normal"):
        assert imported.build_initializer(name, defaults, seed=1) is not None
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    assert imported.compute_trainable_params(model) == {
        "trainable_params": 3 * 2 + 2 + 2 * 2,
        "non_trainable_params": 2 * 2,
        "total_params": 16,
    }
    model.compile(loss="mse", optimizer=imported.build_optimizer("sgd", 0.01, defaults))
    x = np.zeros((8, 3), dtype="float32")
    history = model.fit(x, np.zeros((8, 2)), epochs=5, verbose=0, callbacks=[imported.TerminateOnTimeOut(0)])
    assert len(history.history["loss"]) == 1  # stopped at the end of the first epoch
    history = model.fit(
        x,
        np.zeros((8, 2)),
        epochs=2,
        verbose=0,
        callbacks=[imported.TerminateOnTimeOut(-1), imported.CandleRemoteMonitor()],
    )
    assert len(history.history["loss"]) == 2
    imported.set_parallelism_threads()


# ------------------------------------------------------------------ get_file


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    yield srv
    srv.close()


def make_tarball(path: Path, folder: str, files: dict[str, str]) -> str:
    """A .tar.gz holding ``folder/<name>`` files; returns its md5."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_get_file_downloads_checks_unpacks_and_caches(server: _Server, tmp_path: Path) -> None:
    md5 = make_tarball(server.root / "expr.tar.gz", "expr", {"train.csv": "1,2\n3,4\n", "test.csv": "5,6\n"})
    cache = tmp_path / "cache"
    url = f"{server.url}/expr.tar.gz"

    path = candle.get_file("expr.tar.gz", url, untar=True, md5_hash=md5, datadir=str(cache))
    assert path == str(cache / "expr")
    assert (cache / "expr" / "train.csv").read_text() == "1,2\n3,4\n"
    assert (cache / "expr.tar.gz").is_file() and server.requests == ["/expr.tar.gz"]

    # Cached: no second download.
    assert candle.get_file("expr.tar.gz", url, untar=True, md5_hash=md5, datadir=str(cache)) == path
    assert len(server.requests) == 1

    # A cached archive with another md5 is downloaded again.
    (cache / "expr.tar.gz").write_bytes(b"truncated")
    assert candle.get_file("expr.tar.gz", url, md5_hash=md5, datadir=str(cache)) == path
    assert len(server.requests) == 2 and (cache / "expr" / "test.csv").read_text() == "5,6\n"
    assert sorted(p.name for p in cache.iterdir()) == ["expr", "expr.tar.gz"]  # no leftovers


def test_get_file_md5_mismatch_is_an_error_and_nothing_is_kept(server: _Server, tmp_path: Path) -> None:
    make_tarball(server.root / "expr.tar.gz", "expr", {"a.txt": "a"})
    cache = tmp_path / "cache"
    with pytest.raises(CandleLabError, match=r"md5 mismatch for http://.*/expr\.tar\.gz: expected 0{32}"):
        candle.get_file("expr.tar.gz", f"{server.url}/expr.tar.gz", md5_hash="0" * 32, datadir=str(cache))
    assert list(cache.iterdir()) == []


def test_fetch_file_uses_the_candle_data_dir_cache(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(server.root / "labels.csv", "id,label\n1,tumor\n")
    monkeypatch.setenv("CANDLE_DATA_DIR", str(tmp_path / "data"))
    path = candle.fetch_file(f"{server.url}/labels.csv", "Pilot1")
    assert path == str(tmp_path / "data" / "Pilot1" / "labels.csv")
    assert Path(path).read_text() == "id,label\n1,tumor\n"

    with pytest.raises(CandleLabError, match=r"could not download http://.*/missing\.csv: HTTP 404"):
        candle.fetch_file(f"{server.url}/missing.csv", "Pilot1")
    with pytest.raises(CandleLabError, match=r"cannot unpack 'labels\.csv'"):
        candle.fetch_file(f"{server.url}/labels.csv", "Pilot1", untar=True)


# ------------------------------------------------------------------ unchanged benchmark modules


def test_unchanged_candle_benchmark_runs_through_the_engine(client: Any, tmp_path: Path) -> None:
    spec = {
        "name": "mlp-candle-compat",
        "model": {"kind": "candle", "ref": "mlp_baseline", "path": str(BENCH)},
        "space": {"file": str(BENCH / "mlp_space.json")},
        "objective": {"metric": "val_loss"},
        "search": {"algorithm": "random", "seed": 11},
        "budget": {"max_trials": 3},
        "compute": {"workers": 2},
    }
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    records = exp.records()
    assert [t.state for t in records] == ["completed"] * 3, [t.error for t in records]
    assert all(t.objective is not None for t in records)
    for trial in records:
        run_dir = exp.path / trial.run_id
        final = read_final(run_dir)
        dense = trial.params["dense"]
        assert final["dense"] == [int(v) for v in str(dense).split()]  # "32 16" -> [32, 16]
        for name in ("activation", "learning_rate", "batch_size", "epochs"):
            assert final[name] == trial.params[name], name
        assert final["output_dir"] == str(run_dir)
        assert (final["run_id"], final["experiment_id"]) == (trial.run_id, exp.id)
        assert final["features"] == 12 and final["model_name"] == "mlp"  # from mlp_default_model.txt
        assert final["use_bias"] is True and final["samples"] == 240
        assert (run_dir / "training.log").is_file()  # the module wrote into its output_dir
        assert json.loads((run_dir / "final_params.json").read_text())["dense"] == final["dense"]
    metrics = exp.metrics
    assert set(metrics[metrics.name == "val_loss"]["step"]) == {1, 2}  # live, every epoch


def test_a_benchmark_that_prints_runs_through_the_engine(client: Any, tmp_path: Path) -> None:
    spec = {
        "name": "echo-candle-compat",
        "model": {"kind": "candle", "ref": "echo_baseline", "path": str(BENCH)},
        "space": [{"name": "shift", "type": "real", "low": 0.0, "high": 1.0}],
        "objective": {"metric": "objective"},
        "search": {"algorithm": "random", "seed": 1},
        "budget": {"max_trials": 1},
        "compute": {"workers": 2},
    }
    exp = candle_lab.run(spec, client=client, root=tmp_path)
    trial = exp.records()[0]
    assert trial.state == "completed", trial.error
    assert trial.objective == pytest.approx(0.01 + trial.params["shift"])
    assert "Params:" in (exp.path / trial.run_id / "output.log").read_text()  # prints go to the run's log


def test_unchanged_candle_benchmark_runs_standalone(tmp_path: Path) -> None:
    script = BENCH / "mlp_baseline.py"
    command = [sys.executable, "-m", "candle_lab.compat", str(script), "--epochs", "1", "--dense", "8", "4"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    final = read_final(tmp_path / "Output" / "EXP000" / "RUN000")
    assert final["epochs"] == 1 and final["dense"] == [8, 4] and final["learning_rate"] == 0.01


def test_candle_checkpoints_resume_a_run_where_it_stopped(tmp_path: Path) -> None:
    """Outside PBT, CandleCkptKeras keeps CANDLE's behaviour: a run killed after 2 of 4
    epochs restarts at epoch 3 from the weights and optimizer state it saved."""
    script = BENCH / "ckpt_baseline.py"
    save = tmp_path / "save"
    first = [sys.executable, "-m", "candle_lab.compat", str(script), "--epochs", "2", "--ckpt_directory", str(save)]
    done = subprocess.run(first, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((save / "ckpts" / "last" / "ckpt-info.json").read_text())
    assert info["epoch"] == 2 and info["best_metric_last"] > 0
    assert (save / "ckpts" / "last" / "model.weights.h5").is_file()
    again = [*first[:-4], "--epochs", "4", "--ckpt_directory", str(save)]
    done = subprocess.run(again, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((save / "ckpts" / "last" / "ckpt-info.json").read_text())["epoch"] == 4
    (log,) = tmp_path.glob("Output/**/training.log")  # CSVLogger(append=True) of both runs
    epochs = [line.split(",")[0] for line in log.read_text().splitlines() if not line.startswith("epoch")]
    assert epochs == ["0", "1", "2", "3"]  # the second run trained epochs 3 and 4 only


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env
