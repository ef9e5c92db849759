"""Shim so `packages = find:` can also ship bench/ as the zray_bench package."""
from setuptools import setup

setup(packages=["zray_bench"] + __import__("setuptools").find_packages(include=["zray", "zray.*"]))
