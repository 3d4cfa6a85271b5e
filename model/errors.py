"""The one base exception of `model/`: input a PACS administrator has to fix, never a retry."""


class ModelInputError(ValueError):
    """A radiograph or its geometry cannot be used; the message names the attribute and value."""
