"""The search space: parameter types that carry their behaviour, the YAML grammar, domains, flat names and points."""
