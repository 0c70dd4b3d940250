"""Azure Data Factory: expression engine, linter, local runner and the factory client."""
