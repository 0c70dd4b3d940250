"""Storage network concerns: the firewall rule lifecycle, leases, the agent's IP, smoke tests, the ARM facade."""
