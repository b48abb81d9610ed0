"""Errors a command reports to the user as `meterbridge: msg` with exit status 1."""


class CommandError(Exception):
    """A user-facing failure of a command."""
