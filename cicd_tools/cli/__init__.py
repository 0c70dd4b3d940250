"""The CLI face: the parser (`main`) and one module per command group, each keeping heavy imports in handlers."""
