"""Datasets: each option in ``conf/dataset`` is a factory returning TensorData or LoaderData.

Held on the device (sampled with torch.randint): toy.py (ring8, grid25, swiss_roll, iris),
digits.py (packaged digits), vision.py (mnist, fashion_mnist, cifar10), stacked.py (stacked_mnist).
Streamed through a DataLoader: stream.py (celeba, lsun), folder.py (image_folder).
"""
from ganexp.data.base import DataInfo, LoaderData, TensorData

__all__ = ["DataInfo", "LoaderData", "TensorData"]
