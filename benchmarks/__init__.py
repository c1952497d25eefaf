"""Load tests and reports for the gpt-oss serving deployment (see README.md)."""
