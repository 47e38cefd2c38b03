"""What the tests share besides conftest.py's fixtures: servers started for real, data, page checks."""
