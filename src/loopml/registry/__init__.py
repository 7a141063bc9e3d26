"""Model registry: safe model packages, signatures, versions, aliases and promotion gates."""
