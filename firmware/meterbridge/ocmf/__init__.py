"""Transactions on meters that sign OCMF themselves; imported only for a profile with an "ocmf" section."""


class MeterError(Exception):
    """A signing meter refused or failed a step of a transaction; the text says which."""
