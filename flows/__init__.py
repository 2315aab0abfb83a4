"""Prefect flows: thin wrappers that order the library's steps and move paths and ids."""
