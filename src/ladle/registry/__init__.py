"""The registry: versioned definitions, watermarks and leases in SQL (SQLite or PostgreSQL)."""
