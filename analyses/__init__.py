"""The analysis specs (one TOML file per question), shipped inside the package as astrostats.analyses so that an
installed astrostats finds them (read with importlib.resources); a user copies one to ask a variant."""
