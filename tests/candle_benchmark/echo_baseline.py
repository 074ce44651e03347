"""A CANDLE benchmark module without a framework that prints, as CANDLE's do."""

import os

import candle

file_path = os.path.dirname(os.path.realpath(__file__))


class BenchmarkEcho(candle.Benchmark):
    def set_locals(self):
        self.required = {"learning_rate"}
        self.additional_definitions = [{"name": "shift", "type": float, "default": 0.0}]


def initialize_parameters(default_model="mlp_default_model.txt"):
    bmk = BenchmarkEcho(file_path, default_model, "keras", prog="echo_baseline", desc="prints and returns")
    return candle.finalize_parameters(bmk)


def run(gParameters):
    print("Params:", gParameters)
    return {"objective": gParameters["learning_rate"] + gParameters["shift"]}


if __name__ == "__main__":
    run(initialize_parameters())
