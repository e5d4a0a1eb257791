"""The one door to the hub: client (the API a device calls), schema (table migrations and
API functions), admin (device logins), the embedded server."""
