"""Datasets: each option in ``conf/dataset`` is a factory returning TensorData or LoaderData."""
from ganexp.data.base import DataInfo, LoaderData, TensorData

__all__ = ["DataInfo", "LoaderData", "TensorData"]
