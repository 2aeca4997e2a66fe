"""Default configs (YAML), shipped as package data of ``physadv.configs``: every job finds them from any
working directory (``physadv.core.resources.resolve_file``)."""
