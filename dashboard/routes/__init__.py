"""The dashboard's routes, one module per concern: auth, alerts, cameras, health, users."""
