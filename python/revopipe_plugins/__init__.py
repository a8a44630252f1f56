"""revopipe's built-in plugins, each a folder a newcomer can read alone."""
