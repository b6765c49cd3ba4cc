"""`python -m nomad_vault_token`."""

from nomad_vault_token.cli import main

main()
