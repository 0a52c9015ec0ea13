"""What customers write, read: intents (`intents`), the keyword prefilter under them
(`literals`) and the privacy model that reads by meaning (`semantic`). Below providers and
the inventory, which re-check and read with it; above config, which it reads."""
