"""Sphinx configuration for the anyws documentation.

The pages are Markdown (MyST); the reference comes from the docstrings (autodoc and
napoleon, Google style). The build fetches nothing, so it runs offline: no
intersphinx. ``nox -s docs`` builds it with warnings as errors and runs the doctest
builder over every ``{testcode}`` and ``{doctest}`` block.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.domains.python import ObjectEntry, PythonDomain
from sphinx.util.docutils import SphinxDirective

if TYPE_CHECKING:
    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyws  # noqa: E402

project = "anyws"
author = "the anyws authors"
copyright = "the anyws authors"
release = anyws.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", ".DS_Store"]
# Some pages of the table of contents are glob entries (``performance*``): until such
# a page exists, drop_empty_globs leaves its entry out.

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"anyws {release}"
html_static_path: list[str] = []

# Modules whose every public name (``__all__``) the reference must document.
DOCUMENTED_MODULES = [
    "anyws",
    "anyws.sync",
    "anyws.compat.websockets",
    "anyws.compat.trio_websocket",
]


class NearestPythonDomain(PythonDomain):
    """The Python domain, resolving a short name to the nearest object of that name.

    anyws, its shims and its blocking API define classes of the same names
    (``ConnectionClosed``, ``Server`` ...). A short name in a docstring, such as
    ``Raises: ConnectionClosed``, means the object nearest to the module it is
    written in: the shim's own in a shim, anyws's elsewhere.
    """

    def find_obj(
        self,
        env: BuildEnvironment,
        modname: str,
        classname: str,
        name: str,
        type: str | None,
        searchmode: int = 0,
    ) -> list[tuple[str, ObjectEntry]]:
        matches = super().find_obj(env, modname, classname, name, type, searchmode)
        if len(matches) < 2:
            return matches
        candidates = [match for match in matches if not match[1].aliased] or matches
        here = (modname or "").split(".")

        def nearness(match: tuple[str, ObjectEntry]) -> tuple[int, int]:
            parts = match[0].split(".")
            shared = len(os.path.commonprefix([parts[:-1], here]))
            return shared, -len(parts)

        return [max(candidates, key=nearness)]

    def note_object(
        self,
        name: str,
        objtype: str,
        node_id: str,
        aliased: bool = False,
        location: Any = None,
    ) -> None:
        # One object documented under two public names (anyws.Close and
        # anyws.compat.websockets.Close) has one canonical name: keep the first.
        if aliased and name in self.objects and self.objects[name].aliased:
            return
        super().note_object(name, objtype, node_id, aliased, location)


class ModuleMembers(SphinxDirective):
    """``.. module-members:: anyws.compat.websockets``: document every name of
    ``__all__``, grouped by kind; a name that is the same object as a public name
    of ``anyws`` gets a line pointing there rather than a second description."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        native = {id(getattr(anyws, name)): name for name in anyws.__all__}
        groups: dict[str, list[str]] = {
            "Functions": [],
            "Classes": [],
            "Exceptions": [],
            "Types and constants": [],
            "The same objects as in anyws": [],
        }
        for name in module.__all__:
            obj = getattr(module, name)
            full = f"{module_name}.{name}"
            if id(obj) in native:
                kind = "exception" if _is_exception(obj) else "class"
                groups["The same objects as in anyws"] += [
                    f".. py:{kind}:: {name}",
                    f"   :module: {module_name}",
                    "",
                    f"   The same as :{'exc' if kind == 'exception' else kind}:"
                    f"`anyws.{native[id(obj)]}`.",
                    "",
                ]
            elif _is_exception(obj):
                groups["Exceptions"] += [
                    f".. autoexception:: {full}",
                    "   :members:",
                    "   :show-inheritance:",
                    "",
                ]
            elif inspect.isclass(obj):
                groups["Classes"] += [
                    f".. autoclass:: {full}",
                    "   :members:",
                    "   :show-inheritance:",
                    "",
                ]
            elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
                groups["Functions"] += [f".. autofunction:: {full}", ""]
            else:
                groups["Types and constants"] += [f".. autodata:: {full}", ""]
        lines: list[str] = []
        for title, group in groups.items():
            if group:
                lines += [f".. rubric:: {title}", "", *group]
        content = StringList(lines, source=f"<module-members {module_name}>")
        container = nodes.container()
        self.state.nested_parse(content, self.content_offset, container)
        return list(container.children)


def _is_exception(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def check_reference(app: Sphinx, env: object) -> None:
    """Warn (an error with ``-W``) about any public name the reference leaves out."""
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger(__name__)
    documented = set(app.env.get_domain("py").objects)  # type: ignore[attr-defined]
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):
                continue
            if f"{module_name}.{name}" not in documented:
                logger.warning(
                    "public name not in the reference: %s.%s", module_name, name
                )


# Every Python code block is a tested example (a literalinclude from examples/, whose
# programs the test suite runs) or a doctest ({testcode}, {doctest}). The pages named
# here are exempt from that check; none is.
UNTESTED_CODE_ALLOWED: set[str] = set()
PYTHON_LANGUAGES = {"python", "python3", "py", "pycon", "ipython"}


def check_code_blocks(app: Sphinx, doctree: nodes.document) -> None:
    """Warn about a Python code block that no test runs."""
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger(__name__)
    if app.env.docname in UNTESTED_CODE_ALLOWED:
        return
    for node in doctree.findall(nodes.literal_block):
        if node.get("testnodetype") or node.get("source"):
            continue  # a doctest block, or a literalinclude
        if "docstring of" in (node.source or ""):
            continue  # a docstring's illustration, in the reference
        if node.get("language") in PYTHON_LANGUAGES:
            logger.warning(
                "untested Python code block: include it from examples/ or make "
                "it a {testcode} or {doctest} block",
                location=node,
            )


def drop_empty_globs(app: Sphinx, docname: str, source: list[str]) -> None:
    """Leave out the table of contents' glob entries that match no page yet."""
    if docname != root_doc:
        return
    lines = source[0].splitlines(keepends=True)
    source[0] = "".join(
        line
        for line in lines
        if not line.strip().endswith("*")
        or any(Path(app.srcdir).glob(line.strip() + ".md"))
    )


def setup(app: Sphinx) -> None:
    app.add_domain(NearestPythonDomain, override=True)
    app.add_directive("module-members", ModuleMembers)
    app.connect("env-check-consistency", check_reference)
    app.connect("doctree-read", check_code_blocks)
    app.connect("source-read", drop_empty_globs)
