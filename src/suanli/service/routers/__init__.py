"""HTTP routers, one per resource family; each handler is a thin shell over the service."""
