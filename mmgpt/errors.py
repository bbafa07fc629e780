"""Exception types whose messages are meant for users: the CLI prints them without a traceback."""


class MmgptError(Exception):
    """Base class for errors caused by the user's input (files, configs, requests), not by a bug."""


class ConfigError(MmgptError):
    """A configuration file or option is invalid; the message names the key."""


class CheckpointError(MmgptError):
    """A checkpoint or model directory cannot be loaded; the message names the file and the keys."""


class DataError(MmgptError):
    """A dataset file is unreadable or invalid; the message names the file and the line or record."""


class TrainingError(MmgptError):
    """A training run did not finish (e.g. the `mmgpt train` process a demo stage started failed)."""
