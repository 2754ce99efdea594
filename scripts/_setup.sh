# Shared by scripts/test and scripts/demo: make sure redis-server and the project's
# virtualenv (.venv, with the package and its test extras) are there.
# Sourced, not run; expects to be in the repository root.

if ! command -v redis-server >/dev/null 2>&1; then
    echo "steer: installing redis-server from apt" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# tmux: the dashboard's end-to-end test runs `steer tui` in a real terminal.
if ! command -v tmux >/dev/null 2>&1; then
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
# Reinstall only when pyproject.toml changed; show pip's log only if it fails.
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    echo "steer: installing Python packages into .venv" >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check -e '.[test]' >.venv/pip.log 2>&1; then
        cat .venv/pip.log >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi
