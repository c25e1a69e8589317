"""How every command ends a user's mistake: one line on stderr beginning `error:`, no traceback, exit
status 2 for a bad option and 1 for bad data or a bad file. A bug (any other exception) keeps its
traceback, so that it gets reported.

    @cli.command()                     # on each entry point's main(argv)
    def main(argv=None): ...
    p = cli.ArgumentParser(...)        # argparse, its errors in the same one line

IPT_CHECK_ONLY=1 before any command checks its options and the files they name, then stops before
anything loads (status 0): what a long run would be refused for, in a second.
"""
import argparse
import functools
import math
import os
import re
import sys

BAD_OPTION, BAD_INPUT = 2, 1


class UserError(ValueError):
    """Something the user can fix; the commands print it in one line, without a traceback."""


class OptionError(UserError):
    """An option's value is wrong: the message names the option and what it accepts (exit 2)."""


class Refused(SystemExit):
    """SystemExit with the status of its kind and the message as its text (what tests match); the
    outermost command prints it, once, however many commands it passed through."""

    def __init__(self, status, message):
        super().__init__(status)
        one_line = re.sub(r"\s*\n\s*", " ", message.strip())            # a message's own line breaks
        self.message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in one_line)   # and a value's
        self.shown = False

    def __str__(self):
        return self.message


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are the one line of every other refusal, not a usage block. A command in a
    folder (python -m paper.experiments) is named as it is run."""

    def __init__(self, *args, **kwargs):
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if "prog" not in kwargs and spec is not None and "." in spec.name:
            kwargs["prog"] = f"python -m {spec.name}"
        super().__init__(*args, **kwargs)

    def error(self, message):
        words = self.prog.split()                          # less a sub-command's name (data.py check)
        raise Refused(BAD_OPTION, f"error: {message} (see {' '.join(words[:3] if words[0] == 'python' else words[:1])} --help)")


def command(interrupted="interrupted"):
    """Wrap an entry point's main(argv): a user's mistake ends in one line with its status."""
    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            try:
                return main(argv)
            except Refused as e:
                refused = e
            except OptionError as e:
                refused = Refused(BAD_OPTION, f"error: {e}")
            except UserError as e:                       # bad data, a damaged file (CheckpointError)
                refused = Refused(BAD_INPUT, f"error: {e}")
            except OSError as e:                         # a path the user gave that cannot be read or written
                if e.filename is None:
                    raise
                refused = Refused(BAD_INPUT, f"error: {(e.strerror or str(e)).lower()}: {e.filename}")
            except KeyboardInterrupt:
                refused = Refused(130, interrupted)
            if not refused.shown:
                print(refused.message, file=sys.stderr, flush=True)
                refused.shown = True
            raise refused
        return run
    return wrap


def check_only():
    """IPT_CHECK_ONLY=1: the command checks and writes nothing (not even a lock)."""
    return bool(os.environ.get("IPT_CHECK_ONLY"))


def checked():
    """Every option is checked: under IPT_CHECK_ONLY=1, stop here, before anything loads or is written."""
    if check_only():
        print("options checked (IPT_CHECK_ONLY): nothing run", file=sys.stderr)
        raise SystemExit(0)


def at_least(p, args, lows):
    """Each numeric option against its least value, by flag ({"--steps": 1}); 0 often means its default."""
    for flag, low in lows.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if not (math.isfinite(value) and value >= low):
            p.error(f"{flag} takes a number ≥ {low}{' (0: the default)' if low == 0 else ''}, got {value}")


def folder_option(flag, path, must_exist=True, writable=False):
    """A folder option checked before anything loads: it exists (or can be made), is a folder, and is
    writable where the command writes. -> OptionError naming the flag."""
    if not path:
        raise OptionError(f"{flag} is empty: give a folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OptionError(f"{flag} {path} is a file, not a folder")
    if must_exist and not os.path.isdir(path):
        raise OptionError(f"{flag} {path} is not a folder")
    if writable:
        nearest = path
        while nearest and not os.path.exists(nearest):
            nearest = os.path.dirname(nearest.rstrip("/")) or "."
        if not os.path.isdir(nearest) or not can_write(nearest):
            raise OptionError(f"{flag} {path}: {nearest} is not a writable folder")


def can_write(folder):
    """Try it: root passes every permission check, yet a read-only mount or /sys still refuses it."""
    probe = os.path.join(folder, f".ipt-write-check-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def file_option(flag, path):
    if not path:
        raise OptionError(f"{flag} is empty: give a file")
    if os.path.isdir(path):
        raise OptionError(f"{flag} {path} is a folder, not a file")
    if not os.path.isfile(path):
        raise OptionError(f"{flag} {path}: no such file")
