"""The local cloud: real Azurite plus HTTPS emulators for the Azure surface cicd-tools touches."""
