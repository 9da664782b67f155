"""One thin entry point per dvc stage (`python -m stages.<name>`); the work is in letterwise."""
