"""Accepting an event, whichever way it arrived: the use case HTTP and MQTT share."""
