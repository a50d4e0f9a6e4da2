"""The ``seo-export`` command line: one module per subcommand."""
