"""Errors shared by the data and the model layers, so that neither imports the other for them."""


class RecapDataError(ValueError):
    """A dataset that cannot be trained on with RECAP, with what is wrong and how to fix it."""
