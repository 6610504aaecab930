"""The converter's user-facing error: one paragraph, what went wrong and what to do."""


class ConvertError(Exception):
    """Raised for any problem the user can act on; ``python -m converter`` prints it without a traceback."""
