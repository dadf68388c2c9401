"""LightningDataModules. Each is chosen by a conf/data/*.yaml file through `_target_`."""

from .cifar import CIFARDataModule
from .fashion_mnist import FashionMNISTDataModule
from .image_folder import ImageFolderDataModule
from .in_memory import InMemoryDataModule
from .synthetic import SyntheticDataModule

__all__ = [
    "CIFARDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "SyntheticDataModule",
]
