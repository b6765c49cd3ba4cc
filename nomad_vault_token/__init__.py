"""nomad-vault-token: a Vault token for a Nomad server, safely, every time it starts."""

__version__ = "0.1.0"
