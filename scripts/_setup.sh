# Shared by scripts/test and scripts/demo: make sure redis-server and the project's
# virtualenv (.venv, the package installed editable) are there. The caller sets
# STEER_EXTRAS first: "test" (scripts/test: pytest, mypy, ruff...) or "" (scripts/demo:
# only what steer runs). One .venv serves both: a test install also serves the demo.
# Sourced, not run; expects to be in the repository root.

if ! command -v redis-server >/dev/null 2>&1; then
    echo "steer: installing redis-server from apt" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# tmux: the dashboard's end-to-end test runs `steer tui` in a real terminal.
if [ -n "${STEER_EXTRAS:-}" ] && ! command -v tmux >/dev/null 2>&1; then
    echo "steer: installing tmux from apt" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux >/dev/null
fi
# bubblewrap: the sandbox of the agents' commands (the tests run commands in it).
if ! command -v bwrap >/dev/null 2>&1; then
    echo "steer: installing bubblewrap from apt" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Reinstall only when pyproject.toml changed (or the test extras are wanted and only the
# demo installed); show pip's log only if it fails.
hash="$(sha1sum pyproject.toml | cut -c1-12)"
if [ -n "${STEER_EXTRAS:-}" ]; then
    stamps=(".venv/.installed-$hash-$STEER_EXTRAS")
    target=".[$STEER_EXTRAS]"
else
    stamps=(".venv/.installed-$hash-run" .venv/.installed-"$hash"-*)
    target="."
fi
installed=""
for stamp in "${stamps[@]}"; do [ -e "$stamp" ] && installed=1; done
if [ -z "$installed" ]; then
    echo "steer: installing Python packages into .venv" >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check -e "$target" >.venv/pip.log 2>&1; then
        cat .venv/pip.log >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "${stamps[0]}"
fi
