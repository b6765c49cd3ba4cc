"""`python -m nomad_vault_token`."""

from nomad_vault_token.cli.entry import main

main()
