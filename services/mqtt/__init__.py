"""MQTT ingest: the cashier system may publish events instead of POSTing them."""
