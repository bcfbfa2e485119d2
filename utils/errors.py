class UserError(Exception):
    """A problem with the user's input: printed as one line, never a traceback."""
