"""In-memory fakes of the project's contracts, for unit tests."""
