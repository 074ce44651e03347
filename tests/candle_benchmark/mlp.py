"""MLP benchmark definition, in CANDLE's shape (as in the 2019 CANDLE tutorial and the
ECP-CANDLE Benchmarks): the keywords this benchmark adds and the ones it requires."""

import os

import candle

file_path = os.path.dirname(os.path.realpath(__file__))

additional_definitions = [
    {"name": "samples", "type": int, "default": 200, "help": "number of synthetic samples"},
    {"name": "features", "type": int, "help": "number of input features"},
    {"name": "noise", "type": float, "default": 0.5, "help": "label noise"},
    {"name": "data_seed", "type": int, "default": 1, "help": "seed of the synthetic data"},
    {"name": "use_bias", "type": candle.str2bool, "default": True, "help": "dense layers with a bias"},
]

required = [
    "activation",
    "batch_size",
    "dense",
    "dropout",
    "epochs",
    "features",
    "learning_rate",
    "loss",
    "optimizer",
    "out_activation",
]


class BenchmarkMLP(candle.Benchmark):
    def set_locals(self):
        """Functionality to set variables specific for the benchmark
        - required: set of required parameters for the benchmark.
        - additional_definitions: list of dictionaries describing the additional parameters for the
        benchmark.
        """
        if required is not None:
            self.required = set(required)
        if additional_definitions is not None:
            self.additional_definitions = additional_definitions
