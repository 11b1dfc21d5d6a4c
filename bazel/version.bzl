"""relay's version, in one place: the Debian package and --version read it."""

RELAY_VERSION = "0.1.0"
