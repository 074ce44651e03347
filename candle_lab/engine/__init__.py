"""The search loop: the decisions (:mod:`.state`, pure) and the driver that carries them
out on dask, the store and files (:mod:`.driver`); :mod:`.placement` places trials on
workers."""

from candle_lab.engine.driver import Engine, Observer, Progress

__all__ = ["Engine", "Observer", "Progress"]
