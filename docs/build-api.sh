#!/usr/bin/env sh
# Build p2pool's API reference from its docstrings with pydoctor (Twisted's
# documentation tool) into build/apidocs/ (open build/apidocs/index.html).
# The settings are [tool.pydoctor] in pyproject.toml; any warning (a
# docstring pydoctor cannot parse, an L{...} link that does not resolve)
# makes the build fail with a non-zero status.
#
#   docs/build-api.sh              # pydoctor from .venv, else from PATH
#   PYDOCTOR=/path/to/pydoctor docs/build-api.sh
set -eu
cd "$(dirname "$0")/.."
if [ -z "${PYDOCTOR:-}" ]; then
  if [ -x .venv/bin/pydoctor ]; then PYDOCTOR=.venv/bin/pydoctor; else PYDOCTOR=pydoctor; fi
fi
rm -rf build/apidocs
"$PYDOCTOR" --quiet "$@"
echo "API reference written to build/apidocs/index.html"
