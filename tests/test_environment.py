"""The environment is exactly requirements.lock: a release of any dependency changes nothing until the lock does."""

import importlib.metadata as metadata
import sys

from conftest import ROOT
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What `python -m venv` seeds and the project itself; everything else must come from the lock.
NOT_LOCKED = {"pip", "setuptools", "crossvit"}


def locked() -> dict[str, str]:
    """Name -> version of every lock line whose environment marker holds for this interpreter."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line or line[0] in "# ":
            continue
        req = Requirement(line)
        if req.marker is None or Marker(str(req.marker)).evaluate():
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.lock: {line} is not an exact pin"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_every_installed_package_is_the_locked_version():
    pins = locked()
    assert {"torch", "pillow", "timm", "lightning", "hydra-core"} <= set(pins)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, pins.get(name)) for name, version in installed.items() if name not in NOT_LOCKED}
    wrong = {name: v for name, v in wrong.items() if v[0] != v[1] and v[0].split("+")[0] != v[1]}
    assert not wrong, f"installed (version, locked) differ in {sys.prefix}: {wrong}; run make setup"
    missing = set(pins) - set(installed)
    assert not missing, f"locked but not installed: {sorted(missing)}; run make setup"
