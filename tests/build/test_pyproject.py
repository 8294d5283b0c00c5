"""python/pyproject.toml is valid for setuptools, so `pip install ./python` (README, docs/python.md) works."""

import os
import warnings

from setuptools.config.pyprojecttoml import read_configuration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pyproject_is_valid_and_its_extras_are_requirements() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools calls [tool.setuptools] support "beta"
        config = read_configuration(os.path.join(ROOT, "python", "pyproject.toml"))
    project = config["project"]
    assert {"postgresql", "gateway"} <= set(project["optional-dependencies"])
    assert "Typing :: Typed" in project["classifiers"]
