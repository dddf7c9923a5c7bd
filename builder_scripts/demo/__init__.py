"""The offline demo: generated raw media, simulated annotators and the `emovid-build demo` command."""
