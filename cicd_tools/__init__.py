"""cicd-tools: CI/CD for Azure ML + Azure Data Factory behind private storage."""

__version__ = "0.1.0"
