"""Shell completion for `steer` and `nudge`: `steer completion bash|zsh|fish` prints a
script; session ids and names come from `steer __sessions`.

`__sessions` reads the session index straight from Redis with the raw-socket client
(as `nudge` does), so it answers while the daemon is down and within a few tens of
milliseconds; any failure prints nothing, as a completion must.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon import resp
from daemon.keys import Keys
from daemon.paths import configured_redis_url, key_prefix

SHELLS = ("bash", "zsh", "fish")
#: The hidden subcommand the scripts call for session words.
SESSIONS_COMMAND = "__sessions"
#: `steer` subcommands whose first argument is a session (or SESSION/AGENT).
SESSION_COMMANDS = (
    "show",
    "check",
    "logs",
    "tui",
    "pause",
    "resume",
    "redirect",
    "veto",
    "approve",
    "deny",
    "done",
    "archive",
    "rm",
    "export",
)

_BASH = """\
# steer and nudge completion for bash: source <(steer completion bash)
_steer_offer() { COMPREPLY=($(compgen -W "$1" -- "${COMP_WORDS[COMP_CWORD]}")); }
_steer() {
    if [ "$COMP_CWORD" -eq 1 ]; then
        _steer_offer "__COMMANDS"
        return
    fi
    [ "$COMP_CWORD" -eq 2 ] || return
    case "${COMP_WORDS[1]}" in
        completion) _steer_offer "__SHELLS" ;;
        __SESSION_CASES) _steer_offer "$(steer __SESSIONS 2>/dev/null)" ;;
    esac
}
_nudge() {
    [ "$COMP_CWORD" -eq 1 ] && _steer_offer "$(steer __SESSIONS 2>/dev/null)"
}
complete -o default -F _steer steer
complete -o default -F _nudge nudge
"""

_ZSH = """\
#compdef steer nudge
# steer and nudge completion for zsh (after compinit): source <(steer completion zsh)
_steer() {
    if (( CURRENT == 2 )); then
        compadd -- __COMMANDS
        return
    fi
    case $words[2] in
        completion) (( CURRENT == 3 )) && compadd -- __SHELLS ;;
        __SESSION_CASES) (( CURRENT == 3 )) && compadd -- ${(f)"$(steer __SESSIONS 2>/dev/null)"} ;;
        *) _files ;;
    esac
}
_nudge() {
    (( CURRENT == 2 )) && compadd -- ${(f)"$(steer __SESSIONS 2>/dev/null)"}
}
compdef _steer steer
compdef _nudge nudge
"""

_FISH = """\
# steer and nudge completion for fish: steer completion fish | source
function __steer_arg_of -a command
    set -l words (commandline -opc)
    test (count $words) -eq 2; and contains -- $words[2] (string split " " $command)
end
complete -c steer -n __fish_use_subcommand -f -a "__COMMANDS"
complete -c steer -n "__steer_arg_of completion" -f -a "__SHELLS"
complete -c steer -n "__steer_arg_of '__SESSION_WORDS'" -f -a "(steer __SESSIONS 2>/dev/null)"
complete -c nudge -n "test (count (commandline -opc)) -eq 1" -f -a "(steer __SESSIONS 2>/dev/null)"
"""


def script(shell: str, commands: Sequence[str]) -> str:
    """The completion script for `shell`, completing `commands` as subcommands."""
    template = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}[shell]
    return (
        template.replace("__COMMANDS", " ".join(commands))
        .replace("__SHELLS", " ".join(SHELLS))
        .replace("__SESSION_CASES", "|".join(SESSION_COMMANDS))
        .replace("__SESSION_WORDS", " ".join(SESSION_COMMANDS))
        .replace("__SESSIONS", SESSIONS_COMMAND)
    )


def session_words() -> list[str]:
    """Every session id and name in the index; empty if Redis cannot say."""
    url = configured_redis_url()
    if not url:
        return []
    try:
        with resp.connect(url, timeout=1.0) as conn:
            reply = conn.execute("HGETALL", Keys(key_prefix()).sessions)
    except (OSError, ValueError, resp.RespError):
        return []
    flat = [str(item) for item in reply] if isinstance(reply, list) else []
    return sorted({*flat[::2], *(name for name in flat[1::2] if name)})
