"""CIFAR's own checks (torchvision reads the files; without a network no real copy can be made here)."""

import pytest

from crossvit.data import CIFARDataModule
from crossvit.errors import ConfigError

ARGS = dict(img_size=32, in_chans=3, batch_size=8)


def test_only_10_or_100_classes():
    with pytest.raises(ConfigError, match=r"data.num_classes=7: CIFAR has 10 or 100 classes"):
        CIFARDataModule(root="/nowhere", num_classes=7, **ARGS)


@pytest.mark.parametrize("classes", [10, 100])
def test_a_missing_copy_says_how_to_get_it(tmp_path, classes):
    module = CIFARDataModule(root=str(tmp_path), num_classes=classes, **ARGS)
    # Each set normalises with its own statistics (the first channel's mean differs between the two).
    assert module.mean.flatten()[0] == pytest.approx(255 * (0.4914 if classes == 10 else 0.5071))
    with pytest.raises(ConfigError, match=rf"data.root={tmp_path} holds no CIFAR-{classes} .* data.download=true"):
        module.setup("fit")
