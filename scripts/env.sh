# Sourced by scripts/demo and scripts/test: make .venv and install the project into it from the lock
# (requirements/runtime.lock, or requirements/test.lock with "test"), every package checked against
# its hash; then the project itself, without dependencies. A stamp file remembers what was installed
# (the lock's and pyproject.toml's hash), so a changed lock or pyproject reinstalls.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-}"
LOCK="requirements/${EXTRAS:-runtime}.lock"
if [ ! -f "$LOCK" ]; then
    echo "no lock file $LOCK (scripts/update-deps writes the locks)" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "gateway needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || {
        echo "could not create .venv: on Debian/Ubuntu run 'apt-get install python3-venv' first" >&2
        exit 2
    }
fi
STAMP=".venv/.installed$EXTRAS"
WANT="$(cat "$LOCK" pyproject.toml | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    echo "installing the gateway${EXTRAS:+ with $EXTRAS} into .venv from $LOCK ..." >&2
    PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
    "${PIP[@]}" --require-hashes -r "$LOCK"
    # The build backend (setuptools) comes from the lock too: no build isolation, no unpinned download.
    "${PIP[@]}" --no-deps --no-build-isolation --check-build-dependencies -e .
    echo "$WANT" > "$STAMP"
fi
