"""User-facing errors: the CLI prints these as one line and exits non-zero."""

import difflib


class AudiotokError(Exception):
    """A problem with the user's input (file, config, token file) rather than a bug."""


class ConfigError(AudiotokError, ValueError):
    """A recipe or model config that does not validate."""


class AudioError(AudiotokError):
    """An audio file that cannot be read or is not usable."""


class TokenFileError(AudiotokError):
    """A token file that is truncated, of another version, or of another codec."""


class WriteError(AudiotokError, OSError):
    """An output file that cannot be written (disk full, a directory in the way, no
    permission); names the file. Still an OSError for callers that catch those."""


def did_you_mean(name: str, options) -> str:
    """' (did you mean X?)' for the option closest in spelling to a name that matched none,
    or '': the suffix of an "unknown key / type / loss" error."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
