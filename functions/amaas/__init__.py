"""AMaaS serving runtime: the code that ships to Lambda (and runs `amaas serve` locally). No torch here."""

__version__ = "0.1.0"
