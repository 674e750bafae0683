"""The test suite: one folder per stage, tests/support for what they share."""
