"""The one exception type the export CLI turns into a single readable line and exit code 2."""


class ExportError(Exception):
    """A problem with the user's input (file, options), reported without a traceback."""
