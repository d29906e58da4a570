"""Web UI tests: JSON API in-process, pages in headless Chromium."""
