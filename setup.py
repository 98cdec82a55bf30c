"""Build the optional C accelerator; all other metadata is in pyproject.toml."""

from __future__ import annotations

import os

from setuptools import Extension, setup

# ANYWS_NO_SPEEDUPS=1 builds the pure-Python package only.
extensions = []
if not os.environ.get("ANYWS_NO_SPEEDUPS"):
    extensions.append(
        Extension(
            "anyws._speedups",
            sources=["anyws/_speedups.c"],
            # A missing compiler or header leaves anyws in pure Python, not broken.
            optional=True,
        )
    )

setup(ext_modules=extensions)
