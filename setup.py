# pip needs a setup.py or pyproject.toml to recognise a project; every setting is in setup.cfg.
from setuptools import setup

setup()
