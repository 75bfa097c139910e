"""One module per model API dialect served by :mod:`tests.support.model_server`."""
