"""Which names of the CANDLE library the compatibility subset provides, and which not."""

from __future__ import annotations

from candle_lab.errors import CandleLabError

# Provided without any framework.
PROVIDED_CORE: tuple[str, ...] = (
    "ArgumentStruct",
    "Benchmark",
    "check_flag_conflicts",
    "directory_from_parameters",
    "fetch_file",
    "finalize_parameters",
    "get_file",
    "keras_default_config",
    "set_seed",
    "set_up_logger",
    "str2bool",
    "validate_file",
    "verify_path",
)

# Provided, importing Keras on first use.
PROVIDED_KERAS: tuple[str, ...] = (
    "CandleCheckpointCallback",
    "CandleCkptKeras",
    "CandleRemoteMonitor",
    "TerminateOnTimeOut",
    "build_initializer",
    "build_optimizer",
    "compute_trainable_params",
    "restart",
    "set_parallelism_threads",
)

PROVIDED: tuple[str, ...] = tuple(sorted(PROVIDED_CORE + PROVIDED_KERAS))

# Names of the CANDLE library (ECP-CANDLE Benchmarks' ``common/candle`` and candle_lib)
# that the subset does not provide: using one raises CandleNotProvided.
NOT_PROVIDED: frozenset[str] = frozenset(
    {
        # data_utils
        "load_csv_data",
        "load_Xy_one_hot_data",
        "load_Xy_one_hot_data2",
        "load_Xy_data2",
        "load_Xy_data_noheader",
        "drop_impute_and_scale_dataframe",
        "discretize_dataframe",
        "discretize_array",
        "lookup",
        # generic / parsing / profiling
        "Progbar",
        "parse_from_dictlist",
        "start_profiling",
        "stop_profiling",
        "get_file_from_modac",
        # preprocessing, feature selection, Pilot 1
        "quantile_normalization",
        "generate_cross_validation_partition",
        "select_features_by_missing_values",
        "select_features_by_variation",
        "select_decorrelated_features",
        "coxen_single_drug_gene_selection",
        "coxen_multi_drug_gene_selection",
        "generate_gene_set_data",
        "combat_batch_effect_removal",
        # plots
        "plot_history",
        "plot_scatter",
        "plot_array",
        "plot_metrics",
        "plot_density_observed_vs_predicted",
        "plot_2d_density_sigma_vs_error",
        "plot_histogram_error_per_sigma",
        "plot_calibration_and_errors_binning",
        "plot_percentile_predictions",
        "plot_decile_predictions",
        "plot_calibration_interpolation",
        "plot_calibrated_std",
        "plot_contamination",
        # uncertainty quantification
        "compute_statistics_homoscedastic_summary",
        "compute_statistics_homoscedastic",
        "compute_statistics_heteroscedastic",
        "compute_statistics_quantile",
        "split_data_for_empirical_calibration",
        "compute_empirical_calibration_binning",
        "apply_calibration_binning",
        "overprediction_binning_check",
        "generate_index_distribution",
        "abstention_loss",
        "sparse_abstention_loss",
        "abstention_acc_metric",
        "sparse_abstention_acc_metric",
        "abstention_metric",
        "acc_class_i_metric",
        "abstention_acc_class_i_metric",
        "abstention_class_i_metric",
        "AbstentionAdapt_Callback",
        "modify_labels",
        "add_model_output",
        "r2_heteroscedastic_metric",
        "mae_heteroscedastic_metric",
        "mse_heteroscedastic_metric",
        "meanS_heteroscedastic_metric",
        "heteroscedastic_loss",
        "quantile_loss",
        "triple_quantile_loss",
        "quantile_metric",
        "add_index_to_output",
        "contamination_loss",
        "Contamination_Callback",
        "mse_contamination_metric",
        "mae_contamination_metric",
        "r2_contamination_metric",
        # Keras / PyTorch utilities
        "get_function",
        "PermanentDropout",
        "register_permanent_dropout",
        "LoggingCallback",
        "MultiGPUCheckpoint",
        "r2",
        "mae",
        "mse",
        "xent",
        "build_activation",
        "initialize",
        "CyclicLR",
        "clr_check_args",
        "clr_set_args",
        "clr_callback",
        # checkpoints
        "CandleCkpt",
        "CandleCkptPyTorch",
        "ckpt_parser",
        "ckpt_defs",
    }
)

# Submodules of the CANDLE library; those named like a module of the subset resolve to it.
CANDLE_SUBMODULES: frozenset[str] = frozenset(
    {
        "P1_utils",
        "benchmark_def",
        "ckpt_pytorch_utils",
        "ckpt_utils",
        "ckpt_keras_utils",
        "clr_keras_utils",
        "data_preprocessing_utils",
        "data_utils",
        "default_utils",
        "feature_selection_utils",
        "file_utils",
        "generic_utils",
        "helper_utils",
        "keras_utils",
        "modac_utils",
        "noise_utils",
        "parsing_utils",
        "profiling_utils",
        "pytorch_utils",
        "solr_keras",
        "uq_keras_utils",
        "uq_pytorch_utils",
        "uq_utils",
        "viz_utils",
    }
)

_HINT = (
    "install the CANDLE library (pip install git+https://github.com/ECP-CANDLE/candle_lib) "
    "to use it; a real installation is always used instead of the subset"
)


class CandleNotProvided(CandleLabError, ImportError):
    """A CANDLE library name that candle_lab's compatibility subset does not provide.

    An ``ImportError`` too: ``from candle import X`` shows this message, and a trial that
    fails with it is classified as an import failure (not retried)."""

    def __init__(self, name: str, kind: str = "name") -> None:
        what = f"candle.{name}"
        super().__init__(
            f"{what} is a CANDLE library {kind} that candle_lab's compatibility subset does not "
            f"provide (it provides: {', '.join(PROVIDED)}); {_HINT}"
        )
        self.candle_name = name
