"""
The version of p2pool: the one place it is written. C{pyproject.toml}
reads it (C{[tool.setuptools.dynamic]}), so the installed package's
metadata (C{importlib.metadata.version("p2pool-twisted")}) says the same;
reading it here rather than from the metadata means a source tree never
reports the version of another copy installed beside it.
"""

__version__ = "0.1.0"


def version_line() -> str:
    """
    C{p2pool <version> (Twisted <version>, Python <version>)}: what
    C{--version} prints and what a node logs when it starts.
    """
    import platform

    import twisted

    return f"p2pool {__version__} (Twisted {twisted.__version__}, Python {platform.python_version()})"
