"""Read-only checks of the identity and network chain from CI to the GPU job, one module per link."""
