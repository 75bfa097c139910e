"""Test support: the scripted model server and the real agent CLIs (see each module)."""
