"""A corpus of malformed and hostile specs: each a file to write and the field its
message must name. Used by tests/test_malformed.py (CLI and loader) and, for those that
are JSON documents, by the REST tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODEL = {"ref": "trial_models:quadratic"}
SPACE = [{"name": "x", "type": "real", "low": 0.0, "high": 1.0}]


@dataclass(frozen=True)
class Case:
    name: str
    field: str  # the message names this field (or file)
    data: Any = None  # a spec as data (also sent as a REST body) ...
    text: str | bytes | None = None  # ... or the exact text of the file
    suffix: str = ".yaml"
    files: dict[str, str | bytes] = field(default_factory=dict)  # files beside the spec

    def write(self, folder: Path) -> Path:
        for name, content in self.files.items():
            target = folder / name
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        path = folder / f"{self.name}{self.suffix}"
        text = self.text if self.text is not None else json.dumps(self.data)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path


def spec(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model": MODEL, "space": SPACE, "budget": {"max_trials": 5}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


LAUGHS = "\n".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10))
BILLION_CHOICES = f"""x-laughs:
  l0: &l0 "lol"
{chr(10).join('  ' + line for line in LAUGHS.splitlines())}
model: {{ref: "trial_models:quadratic"}}
space:
  - {{name: c, type: categorical, choices: *l9}}
budget: {{max_trials: 5}}
"""
BILLION_DESCRIPTION = BILLION_CHOICES.replace("choices: *l9", "choices: [a, b]") + "description: *l9\n"
DEEP = 50_000


def _param(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "x", "type": "real", "low": 0.0, "high": 1.0, **fields}]


CASES: list[Case] = [
    # ---- bounds on what is read
    Case("billion-laughs-choices", "space[0].choices", text=BILLION_CHOICES),
    Case("billion-laughs-description", "description", text=BILLION_DESCRIPTION),
    Case("deep-yaml-list", "levels of nested", text="model: {ref: 'm:f'}\nspace: " + "[" * DEEP + "]" * DEEP),
    Case("deep-json", "levels of nested", text='{"space": ' + "[" * DEEP + "]" * DEEP + "}", suffix=".json"),
    Case("nested-past-the-bound", "space[0].value[0]",
         data=spec(space=[{"name": "c", "type": "constant", "value": json.loads("[" * 40 + "]" * 40)}])),
    Case("space-file-dev-zero", "space.file", data=spec(space={"file": "/dev/zero"})),
    Case("space-file-a-folder", "space.file", data=spec(space={"file": "."})),
    Case("space-file-too-large", "space.file", data=spec(space={"file": "big.json"}),
         files={"big.json": b"[" + b" " * (17 << 20) + b"]"}),
    Case("space-file-not-utf8", "space.file", data=spec(space={"file": "latin.json"}),
         files={"latin.json": b'[{"name": "caf\xe9", "type": "real", "low": 0, "high": 1}]'}),
    Case("space-file-deep", "levels of nested", data=spec(space={"file": "deep.json"}),
         files={"deep.json": "[" * DEEP + "]" * DEEP}),
    Case("space-file-laughs", "laughs.yaml.x", data=spec(space={"file": "laughs.yaml"}),
         files={"laughs.yaml": "l0: &l0 [lol]\n" + LAUGHS + "\nx: *l9\n"}),
    Case("space-file-missing", "space.file", data=spec(space={"file": "nowhere.json"})),
    Case("upf-line-deep", "line 1", data=spec(space={"file": "runs.upf"}, search={"algorithm": "upf"}),
         files={"runs.upf": '{"id": "a", "x": ' + "[" * DEEP + "]" * DEEP + "}\n"}),
    Case("upf-bad-id", "line 2.id", data=spec(space={"file": "runs.upf"}, search={"algorithm": "upf"}),
         files={"runs.upf": '{"id": "a", "x": 1}\n{"id": "a b", "x": 2}\n'}),
    Case("upf-empty", "holds no runs", data=spec(space={"file": "runs.upf"}, search={"algorithm": "upf"}),
         files={"runs.upf": "# nothing\n"}),
    Case("spec-not-utf8", "UTF-8", text=b"model: {ref: 'caf\xe9:f'}\n"),
    Case("spec-too-large", "at most 1,024 kB", text="description: '" + "x" * (1 << 20) + "'\n"),
    Case("ten-thousand-parameters", "space.parameters", suffix=".json",
         data=spec(space=[{"name": f"p{i}", "type": "real", "low": 0, "high": 1} for i in range(10_000)])),
    Case("yaml-too-large", "expected YAML of at most 256 kB",
         text=_yaml(spec(space=[{"name": f"p{i}", "type": "real", "low": 0, "high": 1} for i in range(8_000)]))),
    Case("twenty-thousand-choices", "space.parameters[0].choices",
         data=spec(space=[{"name": "c", "type": "categorical", "choices": list(range(20_000))}])),
    Case("long-description", "description", data=spec(description="x" * 20_000)),
    Case("long-string", "space[0].value",
         data=spec(space=[{"name": "c", "type": "constant", "value": "y" * 200_000}])),
    Case("long-name", "name", data=spec(name="n" * 500)),
    # ---- numbers run would refuse
    Case("integer-high-1e100", "space.parameters[0]", text=_yaml(spec(space=[])).replace(
        "space: []", "space:\n- {name: n, type: integer, low: 1, high: 1e100}")),
    Case("real-range-overflows", "space.parameters[0]", data=spec(space=_param(low=-1e308, high=1e308))),
    Case("real-high-infinite", "space.parameters[0]", text=_yaml(spec(space=[])).replace(
        "space: []", "space:\n- {name: x, type: real, low: 0, high: .inf}")),
    Case("real-low-nan", "space.parameters[0]", text=_yaml(spec(space=[])).replace(
        "space: []", "space:\n- {name: x, type: real, low: .nan, high: 1}")),
    Case("million-workers", "compute.workers", data=spec(compute={"workers": 1_000_000})),
    Case("unknown-profile", "compute.profile", data=spec(compute={"profile": "atlantis"})),
    Case("zero-workers", "compute.workers", data=spec(compute={"workers": 0})),
    Case("workers-a-word", "compute.workers", data=spec(compute={"workers": "many"})),
    Case("gpus-beyond-the-node", "compute.gpus", data=spec(compute={"profile": "lab", "gpus": 9})),
    Case("gpu-type-unknown", "compute.gpu_type", data=spec(compute={"profile": "lab", "gpus": 1, "gpu_type": "z9"})),
    Case("partition-injection", "compute.partition", data=spec(compute={"partition": "gpu;rm -rf ~"})),
    Case("memory-a-word", "compute.memory", data=spec(compute={"memory": "lots"})),
    Case("walltime-a-word", "compute.walltime", data=spec(compute={"walltime": "tomorrow"})),
    Case("cores-negative", "compute.cores", data=spec(compute={"cores": -2})),
    Case("max-trials-negative", "budget.max_trials", data=spec(budget={"max_trials": -1})),
    Case("max-time-a-word", "budget.max_time", data=spec(budget={"max_time": "forever"})),
    Case("no-budget", "budget", data=spec(budget=None)),
    Case("timeout-a-word", "trial.timeout", data=spec(trial={"timeout": "soon"})),
    Case("retries-negative", "trial.retries", data=spec(trial={"retries": -1})),
    Case("early-stop-unknown", "trial.early_stop", data=spec(trial={"early_stop": "sometimes"})),
    Case("eta-one", "trial.eta", data=spec(trial={"eta": 1})),
    # ---- search
    Case("algorithm-unknown", "search.algorithm", data=spec(search={"algorithm": "annealing"})),
    Case("initial-points-zero", "search.initial_points", data=spec(search={"initial_points": 0})),
    Case("kappa-negative", "search.kappa", data=spec(search={"kappa": -1})),
    Case("surrogate-unknown", "search.surrogate", data=spec(search={"surrogate": "NN"})),
    Case("grid-too-large", "space", data=spec(
        space=[{"name": f"p{i}", "type": "real", "low": 0, "high": 1} for i in range(12)],
        search={"algorithm": "grid", "grid_points": 10})),
    Case("upf-without-runs", "space", data=spec(search={"algorithm": "upf"})),
    Case("direction-sideways", "objective.direction", data=spec(objective={"direction": "sideways"})),
    # ---- model and space
    Case("no-model", "model", data=spec(model=None)),
    Case("model-ref-without-colon", "model", data=spec(model={"ref": "nocolon"})),
    Case("model-a-list", "model", data=spec(model=["a", "b"])),
    Case("no-space", "space", data=spec(space=None)),
    Case("space-empty", "space", data=spec(space=[])),
    Case("space-a-word", "space", data=spec(space="everything")),
    Case("type-unknown", "space.parameters[0]", data=spec(space=_param(type="quantum"))),
    Case("name-with-space", "space.parameters[0]", data=spec(space=_param(name="learning rate"))),
    Case("names-repeated", "space", data=spec(space=SPACE + SPACE)),
    Case("choices-empty", "space.parameters[0]", data=spec(space=[{"name": "c", "type": "categorical",
                                                                    "choices": []}])),
    Case("log-from-zero", "space.parameters[0]", data=spec(space=_param(log=True))),
    Case("low-above-high", "space.parameters[0]", data=spec(space=_param(low=2.0))),
    Case("low-a-word", "space.parameters[0].low", data=spec(space=_param(low="tiny"))),
    Case("unknown-field", "modle", data={**spec(), "modle": {}}),
    Case("unknown-parameter-field", "space.parameters[0]", data=spec(space=_param(stddev=3))),
    # ---- not a spec at all
    Case("top-level-list", "mapping of sections", data=[1, 2]),
    Case("top-level-number", "mapping of sections", text="42\n"),
    Case("empty-file", "mapping of sections", text=""),
    Case("yaml-syntax", "not valid YAML", text="model: {ref: 'm:f'\nspace: [\n"),
    Case("yaml-python-tag", "not valid YAML", text="model: !!python/object/apply:os.system ['true']\n"),
    Case("json-trailing-comma", "not valid JSON", text='{"model": {"ref": "m:f"},}', suffix=".json"),
]

REST_CASES = [c for c in CASES if isinstance(c.data, dict) and not c.files and "space.file" not in json.dumps(c.data)]
