"""`python -m nomad_vault_token`."""

from nomad_vault_token.entry import main

main()
