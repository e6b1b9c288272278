"""HTTP bodies (requests and responses) of the services' APIs, shared by every service."""
