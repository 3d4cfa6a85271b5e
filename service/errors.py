"""The one base exception of `service/`."""


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(ServiceError):
    """A setting is unusable; the message names it."""


class InputError(ServiceError):
    """Bad input from a client or a PACS: a 4xx or a refusing DICOM status, never a retry."""
