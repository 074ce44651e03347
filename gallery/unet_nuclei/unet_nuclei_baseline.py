"""U-Net segmentation of nuclei in fluorescence-microscopy images.

The model searched in the CANDLE container work (U-Net nuclei segmentation; hyperparameters
depth, filters, kernel size, dropout and activation), on synthetic images generated with a
fixed seed so that it runs anywhere without a download: elliptical nuclei of varying size
and brightness, some touching, with texture, optical blur, background and camera noise;
the target is the binary nucleus mask. Loss: binary cross-entropy; ``dice`` is reported
as a metric.

Standalone: ``python unet_nuclei_baseline.py [--config_file FILE] [--epochs 3 ...]``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras
import numpy as np

from candle_lab.models.candle import benchmark_main, finalize_parameters

HERE = os.path.dirname(os.path.abspath(__file__))


def initialize_parameters(
    default_model: str = "default_model.txt",
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CANDLE's precedence: library defaults < default model file < config file < overrides."""
    return finalize_parameters(os.path.join(HERE, default_model), config_file, overrides)


def _nuclei(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask: 3-9 ellipses, about a third of them touching another one."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    image = np.zeros((size, size), "float32")
    mask = np.zeros((size, size), bool)
    centers: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(3, 10))):
        a, b = rng.uniform(3.5, 8.0), rng.uniform(3.0, 6.5)  # semi-axes
        if centers and rng.random() < 0.35:  # touch a previous nucleus
            cy, cx, r = centers[int(rng.integers(len(centers)))]
            angle = rng.uniform(0, 2 * np.pi)
            dist = r + 0.8 * max(a, b)
            y0, x0 = cy + dist * np.sin(angle), cx + dist * np.cos(angle)
        else:
            y0, x0 = rng.uniform(4, size - 4, size=2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - y0, xx - x0
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        inside = u * u + v * v <= 1.0
        brightness = rng.uniform(0.25, 1.0)
        texture = 1.0 + 0.25 * rng.standard_normal((size, size)).astype("float32")
        image = np.where(inside, np.maximum(image, brightness * texture), image)
        mask |= inside
        centers.append((y0, x0, max(a, b)))
    return image, mask


@functools.lru_cache(maxsize=4)
def load_data(
    images: int = 200, size: int = 64, seed: int = 2019
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic nuclei images and masks, shape (n, size, size, 1); a fixed 80/20 split."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = np.empty((images, size, size, 1), "float32")
    y = np.empty((images, size, size, 1), "float32")
    for i in range(images):
        image, mask = _nuclei(rng, size)
        image = gaussian_filter(image, sigma=rng.uniform(0.8, 1.6))  # optics
        image += rng.uniform(0.0, 0.15)  # background
        image += rng.normal(0.0, rng.uniform(0.03, 0.1), size=image.shape)  # camera noise
        x[i, :, :, 0] = np.clip(image, 0.0, None) / max(float(image.max()), 1e-6)
        y[i, :, :, 0] = mask
    split = int(images * 0.8)
    return x[:split], y[:split], x[split:], y[split:]


def dice(y_true: Any, y_pred: Any) -> Any:
    """Soft Dice coefficient of the predicted and true masks (1 = perfect overlap)."""
    ops = keras.ops
    y_true = ops.cast(y_true, y_pred.dtype)
    intersection = ops.sum(y_true * y_pred)
    return (2.0 * intersection + 1.0) / (ops.sum(y_true) + ops.sum(y_pred) + 1.0)


def build_model(params: dict[str, Any], size: int) -> keras.Model:
    depth = int(params["depth"])
    filters = int(params["filters"])
    kernel = int(params["kernel_size"])
    activation = params["activation"]
    drop = float(params["dropout"])
    if size % 2**depth:
        raise ValueError(f"depth: images of {size} px cannot be halved {depth} times; use a smaller depth")

    def block(x: Any, n: int) -> Any:
        for _ in range(2):
            x = keras.layers.Conv2D(n, kernel, padding="same", activation=activation)(x)
        return x

    inputs = keras.Input((size, size, 1))
    x = inputs
    skips = []
    for level in range(depth):
        x = block(x, filters * 2**level)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2)(x)
        if drop > 0:
            x = keras.layers.Dropout(drop)(x)
    x = block(x, filters * 2**depth)
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(filters * 2**level, 2, strides=2, padding="same")(x)
        x = keras.layers.Concatenate()([x, skips[level]])
        if drop > 0:
            x = keras.layers.Dropout(drop)(x)
        x = block(x, filters * 2**level)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name=str(params.get("model_name", "unet_nuclei")))
    optimizer = keras.optimizers.get(
        {"class_name": params["optimizer"], "config": {"learning_rate": float(params["learning_rate"])}}
    )
    model.compile(loss=params["loss"], optimizer=optimizer, metrics=[dice])
    return model


def run(params: dict[str, Any]) -> keras.callbacks.History:
    keras.utils.set_random_seed(int(params["rng_seed"]))
    x_train, y_train, x_val, y_val = load_data(int(params["images"]), int(params["image_size"]))
    model = build_model(params, x_train.shape[1])
    return model.fit(
        x_train,
        y_train,
        batch_size=int(params["batch_size"]),
        epochs=int(params["epochs"]),
        validation_data=(x_val, y_val),
        verbose=0,
    )


if __name__ == "__main__":
    benchmark_main(initialize_parameters, run, description=__doc__.splitlines()[0])
